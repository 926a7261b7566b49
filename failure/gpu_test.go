package failure

import "testing"

func TestGPUMemoryBytes(t *testing.T) {
	tests := []struct {
		gpuType string
		wantGiB int64
	}{
		{"nvidia-a100-40gb", 40},
		{"nvidia-a100-80gb", 80},
		{"NVIDIA-H100-80GB-HBM3", 80},
		{"nvidia-tesla-t4", 16},
		{"nvidia-l4", 24},
		{"nvidia-l40s", 48},
		{"nvidia-tesla-a100", 40},
		{"", 0},
		{"tpu-v5", 0},
	}
	for _, tt := range tests {
		if got := GPUMemoryBytes(tt.gpuType); got != tt.wantGiB<<30 {
			t.Errorf("GPUMemoryBytes(%q) = %d, want %d GiB", tt.gpuType, got, tt.wantGiB)
		}
	}
}

package failure

import "testing"

func TestFormatBytes(t *testing.T) {
	for in, want := range map[int64]string{
		16 << 30: "16Gi", 17072495002: "15.9Gi", 512 << 20: "512Mi", 100: "100", 1536: "1.5Ki",
	} {
		if got := FormatBytes(in); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", in, got, want)
		}
	}
}

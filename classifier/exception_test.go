package classifier

import "testing"

func TestLastException(t *testing.T) {
	tests := []struct{ log, want string }{
		{"", ""},
		{"Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\nModuleNotFoundError: No module named 'foo'", "ModuleNotFoundError"},
		{"torch.OutOfMemoryError: CUDA out of memory.\nsome shutdown line", "torch.OutOfMemoryError"},
		{"[rank3]: RuntimeError: CUDA error: device-side assert triggered\n[rank3]: Exception raised from c10_cuda_check_implementation", "RuntimeError"},
		{"Exception in thread \"main\" org.apache.spark.SparkException: Job aborted\nCaused by: java.lang.OutOfMemoryError: Java heap space\n\tat java.nio.HeapByteBuffer.<init>", "java.lang.OutOfMemoryError"},
		{"KeyboardInterrupt", "KeyboardInterrupt"},
		{"ERROR: Unexpected bus error encountered in worker.", ""},
		{"    raise ValueError(\"bad\")", ""},
		{"E   AssertionError: shapes differ", "AssertionError"},
		{"2024-01-01 ERROR Something failed: x", ""},
		{"OSError: [Errno 28] No space left on device\nwarning: NotAnError: x", "OSError"},
		{"numpy.core._exceptions._ArrayMemoryError: Unable to allocate 7.91 GiB", "numpy.core._exceptions._ArrayMemoryError"},
	}
	for _, tt := range tests {
		if got, _ := lastException(tt.log); got != tt.want {
			t.Errorf("lastException(%q) = %q, want %q", tt.log, got, tt.want)
		}
	}
}

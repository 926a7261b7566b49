package notify

import (
	"strings"
	"testing"
)

func TestScrubHidesCredentials(t *testing.T) {
	tests := []struct{ in, secret string }{
		{`psycopg2.OperationalError: connection failed: password=hunter2xyz host=db`, "hunter2xyz"},
		{`export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY`, "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY"},
		{`{"api_key": "abcdef0123456789"}`, "abcdef0123456789"},
		{`HF_TOKEN: hf_aBcDeFgHiJkLmNoPqRsTuVwXyZ012345 rejected`, "hf_aBcDeFgHiJkLmNoPqRsTuVwXyZ012345"},
		{`401 Unauthorized; Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig`, "eyJhbGciOiJIUzI1NiJ9"},
		{`fetch https://ci:s3cr3tpass@git.example.com/repo.git failed`, "s3cr3tpass"},
		{`InvalidAccessKeyId: AKIAIOSFODNN7EXAMPLE does not exist`, "AKIAIOSFODNN7EXAMPLE"},
		{`clone failed with ghp_0123456789abcdefghijABCDEFGHIJ012345`, "ghp_0123456789abcdefghijABCDEFGHIJ012345"},
		{`jwt eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl expired`, "eyJzdWIiOiIxMjM0In0"},
		{`--db-password='p@ss w0rd' given`, "p@ss"},
	}
	for _, tt := range tests {
		if got := scrub(tt.in); strings.Contains(got, tt.secret) || !strings.Contains(got, "[redacted]") {
			t.Errorf("scrub(%q) = %q, want %q redacted", tt.in, got, tt.secret)
		}
	}
	// What engineers need to read stays.
	for _, keep := range []string{
		"torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
		"KeyError: 'token_type_ids'",
		"tokenizer failed to load: vocab.json not found",
		"ERROR 1045 (28000): Access denied for user 'etl'@'10.0.0.1'",
	} {
		if got := scrub(keep); got != keep {
			t.Errorf("scrub(%q) = %q, want it unchanged", keep, got)
		}
	}
}

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

// TestScrubHidesCommonForms: the shapes credentials take in real job logs beyond
// key=value with a separated name: environment variables glued to a prefix,
// camelCase keys of JSON and YAML, quoted values with spaces, command-line flags,
// URLs with an empty user or a token for a user, other Authorization schemes, PEM
// private keys, and other services' key prefixes.
func TestScrubHidesCommonForms(t *testing.T) {
	tests := []struct{ in, secret string }{
		{`PGPASSWORD=hunter2xyz psql -h db failed`, "hunter2xyz"},
		{`MYSQLPASSWORD=hunter2xyz`, "hunter2xyz"},
		{`{"accessToken":"a1b2c3d4e5f6g7h8","expiresIn":3600}`, "a1b2c3d4e5f6g7h8"},
		{`clientSecret: Zx8yW7vU6tS5 in config`, "Zx8yW7vU6tS5"},
		{`dbPassword=hunter2xyz`, "hunter2xyz"},
		{`DB_PASS=hunter2xyz`, "hunter2xyz"},
		{`password="correct horse battery staple" rejected`, "battery"},
		{`--db-password='p@ss w0rdsecret' given`, "w0rdsecret"},
		{`mysql --password hunter2xyz -h db`, "hunter2xyz"},
		{`wandb login --api-key 0123456789abcdef0123`, "0123456789abcdef0123"},
		{`redis.exceptions.AuthenticationError: redis://:hunter2xyz@redis:6379/0`, "hunter2xyz"},
		{`git clone https://0123456789abcdef0123456789abcdef01234567@github.com/org/repo`, "0123456789abcdef0123456789abcdef01234567"},
		{`Authorization: token 0123456789abcdef0123456789abcdef01234567`, "0123456789abcdef0123456789abcdef01234567"},
		{`"private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"`, "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"},
		{`stripe.error.AuthenticationError: sk_live_4eC39HqLyjWDarjtT1zdp7dc`, "4eC39HqLyjWDarjtT1zdp7dc"},
		{`gitlab: glpat-Abcdefghij0123456789 expired`, "glpat-Abcdefghij0123456789"},
		{`googleapi: key=AIzaSyA1234567890abcdefghijklmnopqrstuv invalid`, "AIzaSyA1234567890abcdefghijklmnopqrstuv"},
		{`Cookie: session=9f8e7d6c5b4a39281706 rejected`, "9f8e7d6c5b4a39281706"},
	}
	for _, tt := range tests {
		if got := scrub(tt.in); strings.Contains(got, tt.secret) || !strings.Contains(got, "[redacted]") {
			t.Errorf("scrub(%q) = %q, want %q redacted", tt.in, got, tt.secret)
		}
	}
	for _, keep := range []string{
		"generate(max_new_tokens=512) ran out of memory",
		"num_tokens: 4096, passes: 3",
		"author=alice bypass_cache=true",
		"RuntimeError: CUDA error: an illegal memory access was encountered",
	} {
		if got := scrub(keep); got != keep {
			t.Errorf("scrub(%q) = %q, want it unchanged", keep, got)
		}
	}
}

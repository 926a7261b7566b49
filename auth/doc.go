// Package auth is the bearer-token authentication of autofix's HTTP API: the roles a
// token may carry (viewer, approver, admin, each allowed what the one before it is),
// the token file in the data directory (DATA_DIR/tokens.json) that `autofix token`
// edits, the tokens of a Kubernetes Secret, and the Authenticator that checks a
// presented secret against them.
//
// Secrets are never stored: the file and the Authenticator keep only their SHA-256.
// A plain hash is enough because the secrets autofix issues are 32 random bytes, which
// no one can guess from their hash; it would not be for passwords, and that is why a
// secret taken from a Secret must be at least 32 characters long.
//
// The Authenticator can refresh its tokens on its own (Options.Refresh): a secret it
// does not know makes it read the sources again — one read at a time, shared by the
// requests that wait for it, at most once a second on misses — so a new token works
// on its first request. How the sources are read is the caller's function.
//
// auth does not parse HTTP requests, decide which role a route needs, keep login
// sessions or know where the token sources are: the HTTP layer and serve do. It
// decides nothing about jobs.
package auth

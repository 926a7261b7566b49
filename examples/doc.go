// Package examples holds the sample inputs that ship with autofix, embedded so that
// the binary runs its default job without any file at hand.
package examples

import _ "embed"

// Events are sample FailureEvents, one JSON document per line: what
// `autofix classify` reads when it is given no file.
//
//go:embed events.jsonl
var Events []byte

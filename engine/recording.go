package engine

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/autofix/autofix/failure"
	"github.com/autofix/autofix/ledger"
)

// Submission is one job the RecordingRemediator was asked to create.
type Submission struct {
	JobName     string            `json:"jobName"`
	Remediation string            `json:"remediation"`
	ChainID     string            `json:"chain"`
	Attempt     int               `json:"attempt"`
	Resources   failure.Resources `json:"resources"`
	Params      map[string]string `json:"params,omitempty"`
	At          time.Time         `json:"at"`
}

// RecordingRemediator plays the cluster until a real one is configured: it "creates"
// each job by appending it to a JSON-lines file (synced before Submit returns) and,
// like an API server, refuses a second job of the same name — which makes Submit
// idempotent, as the Dispatcher requires.
type RecordingRemediator struct {
	mu    sync.Mutex
	f     *os.File
	names map[string]bool
	now   func() time.Time
}

// OpenRecording opens (creating if needed) the submissions file at path.
func OpenRecording(path string) (*RecordingRemediator, error) {
	subs, err := ReadSubmissions(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open submissions: %w", err)
	}
	r := &RecordingRemediator{f: f, names: make(map[string]bool, len(subs)), now: time.Now}
	for _, s := range subs {
		r.names[s.JobName] = true
	}
	return r, nil
}

// Submit implements Remediator.
func (r *RecordingRemediator) Submit(_ context.Context, rem *ledger.Remediation) error {
	a, ok := OwnAttempt(rem)
	if !ok {
		return fmt.Errorf("remediation %s has no attempt to submit", rem.EventID)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.names[a.JobName] {
		return nil // already exists: done before
	}
	line, err := json.Marshal(Submission{JobName: a.JobName, Remediation: rem.EventID, ChainID: a.ChainID,
		Attempt: a.Number, Resources: a.Resources, Params: a.Params, At: r.now().UTC()})
	if err != nil {
		return err
	}
	if _, err := r.f.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("record submission: %w", err)
	}
	if err := r.f.Sync(); err != nil {
		return fmt.Errorf("record submission: %w", err)
	}
	r.names[a.JobName] = true
	return nil
}

// Close closes the file.
func (r *RecordingRemediator) Close() error { return r.f.Close() }

// ReadSubmissions reads a submissions file. A last line cut short by a crash is ignored.
func ReadSubmissions(path string) ([]Submission, error) {
	f, err := os.Open(path) // #nosec G304 -- the operator's data directory
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	var out []Submission
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var s Submission
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			continue
		}
		out = append(out, s)
	}
	return out, sc.Err()
}

// OwnAttempt is the attempt a remediation asked for (Attempts holds its whole chain's).
func OwnAttempt(rem *ledger.Remediation) (ledger.Attempt, bool) {
	for _, a := range rem.Attempts {
		if a.EventID == rem.EventID {
			return a, true
		}
	}
	return ledger.Attempt{}, false
}

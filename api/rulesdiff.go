package api

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"strings"
	"testing/fstest"

	"github.com/labstack/echo/v5"

	"github.com/autofix/autofix/classifier"
	"github.com/autofix/autofix/rules"
	"github.com/autofix/autofix/rulesdiff"
)

// maxDiffLast is the most events POST /v1/rules:diff replays, and its default.
const maxDiffLast = 1000

// RulesDiffRequest is a candidate — a rule set and/or knowledge tables, each file
// name -> YAML — and how many of the ledger's newest failure events to replay
// through it and the classifier in use.
type RulesDiffRequest struct {
	// Files replace the rules in use; none: the rules in use.
	Files map[string]string `json:"files,omitempty"`
	// Knowledge are tables layered over the embedded ones, in place of the
	// service's classifier.knowledge; none: the tables in use.
	Knowledge map[string]string `json:"knowledge,omitempty"`
	// Last is how many events: 1 to 1000, default 1000.
	Last *int `json:"last,omitempty"`
}

func (s *Server) diffRules(c *echo.Context) error {
	var req RulesDiffRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	last := maxDiffLast
	if req.Last != nil {
		if *req.Last < 1 || *req.Last > maxDiffLast {
			return badRequest("last", "%d: want 1 to %d", *req.Last, maxDiffLast)
		}
		last = *req.Last
	}
	if len(req.Files) == 0 && len(req.Knowledge) == 0 {
		return badRequest("files", "want a candidate: rule files and/or knowledge tables (name -> YAML)")
	}
	ctx := c.Request().Context()
	tooSlow := func(err error) error {
		return apiErr(http.StatusServiceUnavailable, "", "the replay did not finish within the request's time limit: %v", err)
	}
	candidate, err := s.candidate(ctx, &req)
	if err != nil {
		if ctx.Err() != nil {
			return tooSlow(err)
		}
		return err
	}
	rep, err := rulesdiff.Replay(ctx, s.o.Ledger, last, s.o.Classifier, candidate)
	if err != nil {
		if ctx.Err() != nil {
			return tooSlow(err)
		}
		return err
	}
	return c.JSON(http.StatusOK, rep)
}

// candidate builds the request's candidate: the classifier in use with its rules,
// its knowledge tables or both replaced. A file that does not load is a 400 naming
// it (files.<name> or knowledge.<name>).
func (s *Server) candidate(ctx context.Context, req *RulesDiffRequest) (*classifier.Classifier, error) {
	var cand *classifier.Classifier
	if len(req.Files) > 0 {
		fsys, err := yamlFiles("files", req.Files)
		if err != nil {
			return nil, err
		}
		// The candidate is untrusted: the rule language bounds each rule's cost,
		// and the request's deadline stops loading and the replay between rules.
		rs, err := classifier.LoadContext(ctx, fsys)
		if err != nil {
			return nil, loadError(ctx, "files", err)
		}
		cand = s.o.Classifier.WithRules(rs)
	}
	if len(req.Knowledge) > 0 {
		fsys, err := yamlFiles("knowledge", req.Knowledge)
		if err != nil {
			return nil, err
		}
		embedded, err := fs.Sub(rules.Knowledge, "knowledge")
		if err != nil {
			return nil, err
		}
		k, err := classifier.LoadKnowledge(embedded, fsys)
		if err != nil {
			return nil, loadError(ctx, "knowledge", err)
		}
		if cand != nil {
			cand = cand.WithKnowledge(k)
		} else {
			cand = s.o.Classifier.WithKnowledge(k)
		}
	}
	return cand, nil
}

// yamlFiles is the files of a request, plain names ending in .yaml, as a file system.
func yamlFiles(field string, files map[string]string) (fstest.MapFS, error) {
	fsys := fstest.MapFS{}
	for name, text := range files {
		if !strings.HasSuffix(name, ".yaml") || strings.ContainsAny(name, `/\`) || len(name) > 100 {
			return nil, badRequest(field+"."+name, "want a plain file name ending in .yaml, at most 100 bytes")
		}
		fsys[name] = &fstest.MapFile{Data: []byte(text)}
	}
	return fsys, nil
}

// loadError is the error of a candidate's field that did not load: a 400 naming
// the file at fault, or ctx's error when it ran out of time.
func loadError(ctx context.Context, field string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("load the candidate's %s: %w", field, err)
	}
	var le *classifier.LoadError
	if errors.As(err, &le) {
		return badRequest(field+"."+le.File, "%v", err)
	}
	return badRequest(field, "%v", err)
}

package classifier

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/autofix/autofix/rules"
)

// Sources say where a classifier's parts come from; empty fields mean the embedded
// defaults.
type Sources struct {
	// RulesDir replaces the embedded rules with the *.yaml files of a directory.
	RulesDir string
	// KnowledgeDir holds knowledge tables layered over the embedded ones: an entry
	// replaces the embedded entry of the same table and key.
	KnowledgeDir string
	// ModelFile replaces the embedded model; NoModel classifies with the rules and
	// the knowledge tables alone. A model that reads which rules matched is used
	// only with the rules it was trained with.
	ModelFile string
}

// NoModel as Sources.ModelFile means no learned model.
const NoModel = "none"

// The embedded rules, knowledge tables and model, each built on first use.
var (
	embeddedRules     = sync.OnceValues(func() (*RuleSet, error) { return Load(rules.FS) })
	embeddedKnowledge = sync.OnceValues(func() (*Knowledge, error) {
		embedded, err := fs.Sub(rules.Knowledge, "knowledge")
		if err != nil {
			return nil, err
		}
		return LoadKnowledge(embedded)
	})
	embeddedModel = sync.OnceValues(func() (*Model, error) { return ReadModel(bytes.NewReader(rules.Model), "(embedded)") })
)

// maxModelFileBytes bounds a model artifact read from a file.
const maxModelFileBytes = 64 << 20

// LoadDefault builds a classifier from the embedded rules, knowledge tables and
// model, or the replacements src names, with opts (whose Knowledge and Model it sets).
//
// The embedded parts are built once per process and shared: a rule set, knowledge
// tables and a model are read-only once built, and building them is most of the cost
// of a classifier (1.5 s of the rules' compilation under the race detector).
func LoadDefault(src Sources, opts Options) (*Classifier, error) {
	var (
		rs  *RuleSet
		err error
	)
	if src.RulesDir != "" {
		rs, err = Load(os.DirFS(src.RulesDir))
	} else {
		rs, err = embeddedRules()
	}
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	if src.KnowledgeDir != "" {
		embedded, err := fs.Sub(rules.Knowledge, "knowledge")
		if err != nil {
			return nil, err
		}
		opts.Knowledge, err = LoadKnowledge(embedded, os.DirFS(src.KnowledgeDir))
		if err != nil {
			return nil, fmt.Errorf("knowledge: %w", err)
		}
	} else if opts.Knowledge, err = embeddedKnowledge(); err != nil {
		return nil, fmt.Errorf("knowledge: %w", err)
	}
	opts.Model = nil
	switch src.ModelFile {
	case NoModel:
	case "":
		if opts.Model, err = embeddedModel(); err != nil {
			return nil, fmt.Errorf("model: %w", err)
		}
		if !opts.Model.Fits(rs) {
			// An embedded model that read the embedded rules' matches: other rules
			// classify without it, unless a model trained with them is named.
			opts.Model = nil
		}
	default:
		data, err := readLimited(os.DirFS(filepath.Dir(src.ModelFile)), filepath.Base(src.ModelFile), maxModelFileBytes)
		if err != nil {
			return nil, fmt.Errorf("model: %s: %w", src.ModelFile, err)
		}
		if opts.Model, err = ReadModel(bytes.NewReader(data), src.ModelFile); err != nil {
			return nil, fmt.Errorf("model: %w", err)
		}
		if !opts.Model.Fits(rs) {
			return nil, fmt.Errorf("model: %s was trained with other rules (its features include which rules matched); retrain it with these", src.ModelFile)
		}
	}
	return New(rs, opts), nil
}

// ReadModel reads a model artifact of at most 64 MiB; name is for errors.
func ReadModel(r io.Reader, name string) (*Model, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxModelFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(data) > maxModelFileBytes {
		return nil, fmt.Errorf("%s: over the %d-byte limit", name, maxModelFileBytes)
	}
	m := new(Model)
	if err := json.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return m, nil
}

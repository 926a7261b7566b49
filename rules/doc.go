// Package rules holds autofix's default classification rules as data: YAML files, each
// rule an expr-lang condition with its category, retry decision, action, confidence
// and priority, and the test cases that pin their behaviour. The files are embedded in
// the binary; `autofix classify --rules DIR` replaces them with another directory.
//
// The package holds no code beyond the embedding: the classifier package compiles and
// evaluates the rules. docs/rules.md describes the rule language.
package rules

import "embed"

// FS holds the default rule files (*.yaml at its root).
//
//go:embed *.yaml
var FS embed.FS

// Knowledge holds the default knowledge tables (knowledge/*.yaml): the error
// vocabularies — errno, gRPC, HTTP, exception types, accelerator errors, Kubernetes
// reasons, exit codes — mapped to categories and retry decisions.
//
//go:embed knowledge/*.yaml
var Knowledge embed.FS

// Model is the default learned classifier's artifact (classifier.Model), trained by
// `autofix train-classifier` on the labelled corpus of testdata/.
//
//go:embed model.json
var Model []byte

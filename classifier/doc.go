// Package classifier decides what went wrong with a failed job. It compiles rule sets
// — YAML files of expr-lang conditions over the signals of a FailureEvent — and
// evaluates them: every matching rule is evidence, the category of the
// highest-priority evidence wins, and the result carries its confidence, the rules
// that support it and the lines of the log they matched. A failure nothing explains
// with enough confidence is unknown and not retried.
//
// Rules are compiled once, when a rule set loads, and a rule set that fails to compile
// never loads at all. The rules' case-insensitive search helpers compile to one
// Aho–Corasick scan of the event's text and to line-wise regexes that run only on the
// lines that can match, so the cost of a classification grows with the length of the
// log rather than with the number of rules. Rule files are untrusted: the language is
// cut down to constructs that do not loop, with limits on size, built strings and
// regexes, so that evaluating any rule is bounded (see limits.go and docs/rules.md).
//
// It also evaluates a classifier against labelled events (Evaluate) and runs the test
// cases rule files carry (Classifier.Check).
//
// It does no I/O beyond reading the rule files it is given, and it neither predicts
// the success of a retry nor chooses a configuration: the models, optimizer and
// recommender packages do.
package classifier

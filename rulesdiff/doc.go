// Package rulesdiff replays the failure events the ledger recorded through two
// classifiers, the one in use and a candidate (other rules, knowledge tables or a
// model), and reports which classifications and retry decisions the candidate would
// change: `autofix rules diff` and POST /v1/rules:diff, the check a team runs before
// a rule change lands.
//
// It owns the comparison (Diff) and reading the last events from the ledger
// (Replay). It does not own loading a
// candidate (classifier.LoadDefault, the API's request), printing the report, or
// deciding how much change is too much (the command's limits): its callers do.
// Nothing it does writes to the ledger.
package rulesdiff

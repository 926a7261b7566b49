// Package review decides the remediations the policy kept for a person: a
// reviewer's approval — the recommendation's chosen option, another option of its
// Pareto front, or either with resources or the job's declared tunables edited —
// held to the job's tunables, the catalogue, the largest node, the policy's cost cap
// and the chain's attempt budget, and recorded with its attempt (numbered as the
// engine numbers its own) and an audit row; and a rejection, with its reason.
//
// Its errors say what was wrong with the request (FieldError, naming the field) or
// with the remediation as it stands (ConflictError); the ledger's own errors (not
// found, a state changed meanwhile) pass through.
//
// review does not speak HTTP, authenticate anyone or decide who may review: the
// HTTP layer does, and calls it from the JSON API and the review page alike. It
// submits nothing: the engine's dispatcher acts on what it records.
package review

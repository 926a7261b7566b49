// Package notify tells on-call about the fixes that wait for a person, where on-call
// already looks: it sends each remediation in pending_review to Alertmanager (API v2)
// as an alert, resends it before it would expire, raises its severity when the
// review has waited too long, and resolves it once the fix is approved or rejected.
//
// It reads the ledger on every round rather than hooking the state transitions: a
// round sends what the ledger says now, so it is right whichever replica decided a
// fix, and after a restart. What it remembers between rounds (the alerts it sent,
// to resolve them) is an optimisation of the resolution, not the truth: an alert
// that no one resolves ends on its own at its endsAt, a few rounds later.
//
// It owns the alerts' labels and annotations (what a routing tree can match on,
// and what a receiver shows) and the Alertmanager client. It does not route,
// group, silence or deliver to people: Alertmanager does.
//
// Webhooks are the other way out: a signed JSON message (or a Slack text) for each
// thing that happens to a review — begun, escalated, ended — queued once per webhook
// in the ledger's deliveries table and delivered from there with retries. Those rows
// are the only thing this package writes to the ledger; it decides nothing, and the
// review link it sends opens the review page, where approving takes a logged-in
// person and a form, never the link alone.
package notify

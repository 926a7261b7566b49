// Package autonomy is graduated autonomy: it tracks, for each kind of fix (a failure
// category on one job template), how often people approved its fixes and how often
// they worked, proposes the kinds that pass policy.autonomy's thresholds for an
// admin to grant, keeps every replica's view of the grants in force (Grants, read by
// the engine's intake without a ledger read per event), and, on the leader, revokes
// a grant whose automatic fixes start failing, so that the kind goes back to review.
//
// It owns the thresholds' arithmetic and the grant and revocation procedure. It does
// not decide single fixes (package policy turns a review verdict into auto for a
// granted kind), store anything (the ledger records grants, revocations and their
// figures, and counts reviews and outcomes), or speak HTTP (package api).
package autonomy

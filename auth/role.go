package auth

import "fmt"

// Role is what a token may do. Each role is allowed everything the one below it is.
type Role string

// The roles, from least to most allowed.
const (
	// Viewer may read.
	Viewer Role = "viewer"
	// Approver may also decide the remediations waiting for review.
	Approver Role = "approver"
	// Admin may do everything.
	Admin Role = "admin"
)

// ParseRole returns the role named s, or an error naming s and the valid roles.
func ParseRole(s string) (Role, error) {
	if r := Role(s); r.rank() > 0 {
		return r, nil
	}
	return "", fmt.Errorf("%q is not a role: want viewer, approver or admin", s)
}

// Allows reports whether r may do what needs the role need. An unknown role allows
// nothing and an unknown need is allowed to no one, so that a typo fails closed.
func (r Role) Allows(need Role) bool {
	return need.rank() > 0 && r.rank() >= need.rank()
}

// rank orders the roles; 0 is not a role.
func (r Role) rank() int {
	switch r {
	case Viewer:
		return 1
	case Approver:
		return 2
	case Admin:
		return 3
	}
	return 0
}

// Principal is who made a request.
type Principal struct {
	Name string
	Role Role
}

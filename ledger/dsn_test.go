package ledger

import "testing"

// The one test of what names a PostgreSQL ledger: config's validation and Open both
// ask IsPostgres.
func TestIsPostgres(t *testing.T) {
	for dsn, want := range map[string]bool{
		"postgres://autofix@db:5432/autofix":          true,
		"postgresql://autofix:pw@db/autofix?sslmode=": true,
		"POSTGRES://db/autofix":                       true,
		"autofix-data/ledger.db":                      false,
		"file:ledger.db?mode=rwc":                     false,
		"mysql://db/autofix":                          false,
		"postgres:/db":                                false,
		"":                                            false,
	} {
		if got := IsPostgres(dsn); got != want {
			t.Errorf("IsPostgres(%q) = %v, want %v", dsn, got, want)
		}
	}
}

func TestStatesListsEveryStateOnce(t *testing.T) {
	got := States()
	seen := map[State]bool{}
	for _, s := range got {
		if seen[s] {
			t.Errorf("%s listed twice", s)
		}
		seen[s] = true
	}
	for from, to := range transitions {
		for _, s := range append([]State{from}, to...) {
			if !seen[s] {
				t.Errorf("state %s has transitions but is not in States()", s)
			}
		}
	}
	got[0] = "changed"
	if States()[0] != Received {
		t.Error("States() returns the package's own slice: a caller can change it")
	}
}

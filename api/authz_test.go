package api

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/autofix/autofix/auth"
)

// TestANewTokenWorksOnItsFirstRequest: with a refreshing Authenticator over the
// token file, a token created after the server started is accepted by the API and
// the review page at once.
func TestANewTokenWorksOnItsFirstRequest(t *testing.T) {
	var file string
	e := newEnv(t, func(o *Options) {
		o.Auth = auth.New(nil, auth.Options{Refresh: func(context.Context) ([]auth.Token, error) {
			s, err := auth.OpenStore(file)
			if err != nil {
				return nil, err
			}
			return s.Tokens(), nil
		}})
	})
	file = e.tokenFile
	ts, err := auth.OpenStore(e.tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := ts.Create("newcomer", auth.Approver)
	if err != nil {
		t.Fatal(err)
	}
	e.tokens[auth.Approver] = secret
	if status, b, _ := e.call("GET", "/v1/models", auth.Approver, ""); status != http.StatusOK {
		t.Errorf("GET /v1/models with a token created a moment ago: %d %s", status, b)
	}
	e.login(auth.Approver)
}

// badBodies are request bodies of every kind a check of the body could refuse:
// none, the wrong content type, a body that does not parse, one over the size limit.
var badBodies = []struct {
	name, contentType, body string
}{
	{"no body", "", ""},
	{"wrong content type", "text/plain", "approve it"},
	{"multipart", "multipart/form-data; boundary=x", "--x--"},
	{"bad JSON", "application/json", `{"reason":`},
	{"bad form", "application/x-www-form-urlencoded", "reason=%zz&option=x"},
	{"too large", "application/json", `{"reason":"` + strings.Repeat("x", 3<<20) + `"}`},
}

// TestRolesAreCheckedBeforeTheBody: a caller whose role is too low gets 403 whatever
// the body (none, another content type, one that does not parse, one too large) and
// whether what it names exists or not, on every route of the JSON API and of the
// review page that needs more than a viewer. Before, a viewer's approve without a
// JSON body got 415, and a review-page form too large got 413.
func TestRolesAreCheckedBeforeTheBody(t *testing.T) {
	e := newEnv(t)
	r := e.pending(oomEvent)
	sessions := map[auth.Role]string{auth.Viewer: e.login(auth.Viewer), auth.Approver: e.login(auth.Approver)}
	type route struct {
		path string
		as   auth.Role
	}
	var routes []route
	for _, prefix := range []string{"/v1", "/ui"} {
		for _, id := range []string{r.EventID, "no-such-id"} {
			for _, action := range []string{"approve", "reject"} {
				routes = append(routes, route{prefix + "/remediations/" + id + "/" + action, auth.Viewer})
			}
		}
	}
	for _, id := range []string{r.EventID, "no-such-id"} {
		routes = append(routes, route{"/v1/remediations/" + id + ":correct", auth.Viewer}, route{"/ui/remediations/" + id + "/correct", auth.Viewer})
	}
	for _, path := range []string{"/v1/policy/pause", "/v1/rules:test", "/v1/pipelines"} {
		routes = append(routes, route{path, auth.Viewer}, route{path, auth.Approver})
	}
	for _, rt := range routes {
		for _, b := range badBodies {
			t.Run(string(rt.as)+rt.path+"/"+b.name, func(t *testing.T) {
				req, err := http.NewRequest("POST", e.url+rt.path, strings.NewReader(b.body))
				if err != nil {
					t.Fatal(err)
				}
				if b.contentType != "" {
					req.Header.Set("Content-Type", b.contentType)
				}
				api := strings.HasPrefix(rt.path, "/v1/")
				if api {
					req.Header.Set("Authorization", "Bearer "+e.tokens[rt.as])
				} else {
					req.AddCookie(&http.Cookie{Name: sessionCookie, Value: sessions[rt.as]})
				}
				resp, err := e.noRedirects().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusForbidden {
					t.Errorf("POST %s as %s with %s: %d, want 403\n%.300s", rt.path, rt.as, b.name, resp.StatusCode, body)
				}
				if api {
					checkSpec(t, req, []byte(b.body), resp.StatusCode, resp.Header, body)
				}
			})
		}
	}
	got, err := e.store.Get(t.Context(), r.EventID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != r.State || len(got.Audit) != len(r.Audit) {
		t.Errorf("after the refused posts: %s with %d audit rows, want %s with %d", got.State, len(got.Audit), r.State, len(r.Audit))
	}
}

// TestNewNamesWhatIsMissing: New refuses options without what the routes need,
// naming each missing field.
func TestNewNamesWhatIsMissing(t *testing.T) {
	_, err := New(Options{})
	for _, field := range []string{"Ledger", "Review", "Recommender", "Classifier", "Models", "Auth"} {
		if err == nil || !strings.Contains(err.Error(), "Options."+field+": required") {
			t.Errorf("New(Options{}) = %v, want an error naming %s", err, field)
		}
	}
	o := newEnv(t).opts
	o.Review = nil
	if _, err := New(o); err == nil || strings.Contains(err.Error(), "Ledger") || !strings.Contains(err.Error(), "Review") {
		t.Errorf("New without Review = %v, want an error naming Review alone", err)
	}
}

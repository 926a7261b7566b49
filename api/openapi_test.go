package api

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// specPath is the API's OpenAPI document, relative to this package's directory.
const specPath = "../docs/openapi.yaml"

// loadSpec loads the document and its router, loaded once for every test of the package.
var loadSpec = sync.OnceValues(func() (*openAPISpec, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(specPath)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", specPath, err)
	}
	// NewRouter validates the document first.
	router, err := legacy.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", specPath, err)
	}
	return &openAPISpec{doc: doc, router: withVerbs(doc, router)}, nil
})

// verbRouter is kin-openapi's legacy router and the paths it cannot match: those
// whose last segment is a path parameter followed by a custom verb
// ("/v1/remediations/{id}:correct", the way Google's API design guide writes custom
// methods). The legacy router's parameter takes the whole segment, verb and all.
type verbRouter struct {
	routers.Router
	doc   *openapi3.T
	verbs []verbPath
}

// verbPath is one path of the document with a parameter and a verb in a segment.
type verbPath struct {
	template string
	re       *regexp.Regexp
	names    []string
}

// withVerbs wraps router with the document's paths that hold "}:".
func withVerbs(doc *openapi3.T, router routers.Router) routers.Router {
	vr := &verbRouter{Router: router, doc: doc}
	param := regexp.MustCompile(`\{([^}]+)\}`)
	for _, template := range doc.Paths.InMatchingOrder() {
		if !strings.Contains(template, "}:") {
			continue
		}
		var names []string
		expr := "^"
		last := 0
		for _, m := range param.FindAllStringSubmatchIndex(template, -1) {
			expr += regexp.QuoteMeta(template[last:m[0]]) + "([^/]+?)"
			names = append(names, template[m[2]:m[3]])
			last = m[1]
		}
		expr += regexp.QuoteMeta(template[last:]) + "$"
		vr.verbs = append(vr.verbs, verbPath{template: template, re: regexp.MustCompile(expr), names: names})
	}
	return vr
}

// FindRoute is the legacy router's route, or else that of a path with a verb.
func (r *verbRouter) FindRoute(req *http.Request) (*routers.Route, map[string]string, error) {
	route, params, err := r.Router.FindRoute(req)
	if err == nil {
		return route, params, nil
	}
	server, _, path := r.doc.Servers.MatchURL(req.URL)
	if server == nil {
		return nil, nil, err
	}
	for _, v := range r.verbs {
		m := v.re.FindStringSubmatch(path)
		if m == nil {
			continue
		}
		item := r.doc.Paths.Value(v.template)
		op := item.GetOperation(req.Method)
		if op == nil {
			return nil, nil, routers.ErrMethodNotAllowed
		}
		params := make(map[string]string, len(v.names))
		for i, name := range v.names {
			params[name] = m[i+1]
		}
		return &routers.Route{Spec: r.doc, Server: server, Path: v.template, PathItem: item, Method: req.Method, Operation: op}, params, nil
	}
	return nil, nil, err
}

type openAPISpec struct {
	doc    *openapi3.T
	router routers.Router
}

// specOptions are the validator's options: every response status must be documented,
// and authentication is the server's business, not the validator's.
func specOptions(withBody bool) *openapi3filter.Options {
	o := &openapi3filter.Options{
		ExcludeRequestBody:    !withBody,
		IncludeResponseStatus: true,
		MultiError:            true,
		AuthenticationFunc:    openapi3filter.NoopAuthenticationFunc,
	}
	o.WithCustomSchemaErrorFunc(schemaMessage)
	return o
}

// schemaMessage says where a value breaks its schema and how, without kin-openapi's
// dump of the whole schema (a failure message shows the body instead).
func schemaMessage(err *openapi3.SchemaError) string {
	if err.Origin != nil {
		return "" // kin-openapi's own message
	}
	reason := cmp.Or(err.Reason, fmt.Sprintf("does not match the schema's %q", err.SchemaField))
	return fmt.Sprintf("at %q: %s", "/"+strings.Join(err.JSONPointer(), "/"), reason)
}

// checkSpec validates a real request/response pair against docs/openapi.yaml (loaded once),
// failing the test with kin-openapi's message if the response does not match the document
// (status documented for the operation, content type, body schema). Requests to paths the
// document does not cover (e.g. /ui/...) are a test failure too.
//
// The request (its parameters, and its body when reqBody is not empty) is checked only when
// the server accepted it (a status below 400): a request the server refused may well be
// one the document forbids. A request body without a Content-Type is taken as JSON, as the
// server takes it. A method a documented path does not take must get an error (404 under
// /v1, 405 elsewhere) of the document's Error shape.
func checkSpec(t testing.TB, req *http.Request, reqBody []byte, status int, header http.Header, respBody []byte) {
	t.Helper()
	s, err := loadSpec()
	if err != nil {
		t.Fatalf("checkSpec: %v", err)
	}
	ctx := t.Context()
	r := req.Clone(ctx)
	withBody := len(reqBody) > 0
	r.Body, r.ContentLength = http.NoBody, 0
	if withBody {
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(reqBody)), int64(len(reqBody))
		if r.Header.Get("Content-Type") == "" {
			r.Header.Set("Content-Type", "application/json")
		}
	}
	if r.URL.RawPath != "" {
		// Match the path as the server does, on its escaped form: an escaped "/" stays
		// inside its path parameter.
		u := *r.URL
		u.Path, u.RawPath = r.URL.EscapedPath(), ""
		r.URL = &u
	}
	what := fmt.Sprintf("%s %s -> %d", req.Method, req.URL.RequestURI(), status)

	route, params, err := s.router.FindRoute(r)
	if err != nil {
		if status >= http.StatusBadRequest && s.documentsPath(r) {
			// A method the path does not take: the document cannot list the answer,
			// but it is an error of the one shape.
			s.checkError(t, what, header, respBody)
			return
		}
		t.Errorf("%s: the request is not an operation of %s: %v", what, specPath, err)
		return
	}
	in := &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route,
		Options: specOptions(withBody)}
	if status < http.StatusBadRequest {
		if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
			t.Errorf("%s: the server accepted a request %s does not allow: %v", what, specPath, err)
		}
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: status, Header: header,
		Body: io.NopCloser(bytes.NewReader(respBody)), Options: specOptions(withBody)}
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		t.Errorf("%s: the response does not match %s: %v\nbody: %s", what, specPath, err, clipBody(respBody))
	}
}

// documentsPath reports whether the document has r's path under any method.
func (s *openAPISpec) documentsPath(r *http.Request) bool {
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		rm := r.Clone(r.Context())
		rm.Method = m
		if _, _, err := s.router.FindRoute(rm); err == nil {
			return true
		}
	}
	return false
}

// checkError checks an error response against the document's Error schema.
func (s *openAPISpec) checkError(t testing.TB, what string, header http.Header, body []byte) {
	t.Helper()
	schema := s.doc.Components.Schemas["ErrorBody"]
	if schema == nil || schema.Value == nil {
		t.Errorf("%s: %s has no components/schemas/ErrorBody", what, specPath)
		return
	}
	if ct, _, err := mime.ParseMediaType(header.Get("Content-Type")); err != nil || ct != "application/json" {
		t.Errorf("%s: content type %q, want application/json", what, header.Get("Content-Type"))
		return
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Errorf("%s: the body is not JSON: %v\nbody: %s", what, err, clipBody(body))
		return
	}
	if err := schema.Value.VisitJSON(v, openapi3.MultiErrors(), openapi3.SetSchemaErrorMessageCustomizer(schemaMessage)); err != nil {
		t.Errorf("%s: the error does not match %s: %v\nbody: %s", what, specPath, err, clipBody(body))
	}
}

// clipBody shortens a body for a failure message.
func clipBody(b []byte) string {
	const limit = 2000
	if len(b) > limit {
		return string(b[:limit]) + "…"
	}
	return string(b)
}

func TestOpenAPIDocumentIsValid(t *testing.T) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(specPath)
	if err != nil {
		t.Fatalf("load %s: %v", specPath, err)
	}
	if err := doc.Validate(t.Context()); err != nil {
		t.Fatalf("%s is not a valid OpenAPI document: %v", specPath, err)
	}
	if _, err := loadSpec(); err != nil {
		t.Fatal(err)
	}
}

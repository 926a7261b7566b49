package failure

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/api/resource"
)

// Limits of the wire format.
const (
	// MaxPayload is the largest encoded event Decode accepts, in bytes.
	MaxPayload = 1 << 20
	// MaxLogTail is the most of a log tail an event keeps, in bytes; a longer tail
	// keeps its end and is flagged LogTruncated.
	MaxLogTail = 64 << 10
	// MaxIDLength is the longest event id accepted, in bytes.
	MaxIDLength = 256
	// MaxGPUs bounds the GPU count of one job.
	MaxGPUs = 4096
)

// ErrPayloadTooLarge is wrapped by the error Decode returns for a payload over MaxPayload.
var ErrPayloadTooLarge = errors.New("payload too large")

// FieldError is a rejection of an event, naming the field (a dotted JSON path such as
// "job.resources.memory"; "payload" for the document as a whole) and the problem.
type FieldError struct {
	Field   string
	Problem string
	err     error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

// Unwrap returns the sentinel error behind e, if any.
func (e *FieldError) Unwrap() error { return e.err }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// Decode parses and validates one FailureEvent. Unknown fields are ignored; missing
// required fields (id, job.name, failure), malformed values and payloads over
// MaxPayload are rejected with a *FieldError. A log tail over MaxLogTail keeps its
// last MaxLogTail bytes and is flagged.
func Decode(data []byte) (Event, error) {
	if len(data) > MaxPayload {
		return Event{}, &FieldError{
			Field:   "payload",
			Problem: fmt.Sprintf("%d bytes is over the %d-byte limit", len(data), MaxPayload),
			err:     ErrPayloadTooLarge,
		}
	}
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] != '{' && json.Valid(t) {
		return Event{}, fieldErr("payload", "want a JSON object")
	}
	var w wireEvent
	if err := json.Unmarshal(data, &w); err != nil {
		return Event{}, jsonError(data, err)
	}
	return w.event()
}

// UnmarshalJSON decodes e with Decode, so that an Event embedded in another document
// is validated the same way.
func (e *Event) UnmarshalJSON(data []byte) error {
	ev, err := Decode(data)
	if err != nil {
		return err
	}
	*e = ev
	return nil
}

// jsonError turns an encoding/json error into a FieldError.
func jsonError(data []byte, err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		if len(bytes.TrimSpace(data)) == 0 {
			return fieldErr("payload", "empty")
		}
		return fieldErr("payload", "not valid JSON at byte %d: %s", syn.Offset, syn.Error())
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "payload"
		}
		return fieldErr(field, "want %s, got %s", jsonKind(typ.Type.Kind().String()), typ.Value)
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		return fe
	}
	return fieldErr("payload", "%v", err)
}

func jsonKind(goKind string) string {
	switch goKind {
	case "struct", "map":
		return "an object"
	case "slice", "array":
		return "an array"
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	default:
		return "a number"
	}
}

// wireEvent is the JSON shape of an event, before validation.
type wireEvent struct {
	ID      *string      `json:"id"`
	Time    string       `json:"time"`
	Source  string       `json:"source"`
	Job     *wireJob     `json:"job"`
	Failure *wireFailure `json:"failure"`
}

type wireJob struct {
	Namespace string                     `json:"namespace"`
	Name      string                     `json:"name"`
	UID       string                     `json:"uid"`
	Kind      string                     `json:"kind"`
	Template  string                     `json:"template"`
	Pipeline  string                     `json:"pipeline"`
	Stage     string                     `json:"stage"`
	Attempt   int                        `json:"attempt"`
	Image     string                     `json:"image"`
	Resources wireResources              `json:"resources"`
	Params    map[string]json.RawMessage `json:"params"`
	Tunables  map[string]wireTunable     `json:"tunables"`
	Labels    map[string]string          `json:"labels"`
}

type wireResources struct {
	CPU              json.RawMessage `json:"cpu"`
	Memory           json.RawMessage `json:"memory"`
	GPU              json.RawMessage `json:"gpu"`
	GPUType          string          `json:"gpuType"`
	EphemeralStorage json.RawMessage `json:"ephemeralStorage"`
}

type wireTunable struct {
	Role   string   `json:"role"`
	Min    float64  `json:"min"`
	Max    float64  `json:"max"`
	Values []string `json:"values"`
}

type wireFailure struct {
	Reason          string    `json:"reason"`
	ExitCode        int32     `json:"exitCode"`
	Message         string    `json:"message"`
	LogTail         string    `json:"logTail"`
	LogTruncated    bool      `json:"logTruncated"`
	DurationSeconds float64   `json:"durationSeconds"`
	Node            string    `json:"node"`
	Usage           wireUsage `json:"usage"`
	Cost            float64   `json:"cost"`
	Unpriced        string    `json:"unpriced"`
}

type wireUsage struct {
	PeakMemory    json.RawMessage `json:"peakMemory"`
	PeakGPUMemory json.RawMessage `json:"peakGPUMemory"`
	PeakEphemeral json.RawMessage `json:"peakEphemeralStorage"`
}

func (w *wireEvent) event() (Event, error) {
	var ev Event
	if w.ID == nil || strings.TrimSpace(*w.ID) == "" {
		return Event{}, fieldErr("id", "required")
	}
	if err := checkID(*w.ID); err != nil {
		return Event{}, err
	}
	ev.ID = *w.ID
	if w.Time != "" {
		t, err := time.Parse(time.RFC3339Nano, w.Time)
		if err != nil {
			return Event{}, fieldErr("time", "want an RFC 3339 time, got %q", w.Time)
		}
		ev.Time = t
	}
	ev.Source = w.Source
	if w.Job == nil {
		return Event{}, fieldErr("job.name", "required")
	}
	job, err := w.Job.job()
	if err != nil {
		return Event{}, err
	}
	ev.Job = job
	if w.Failure == nil {
		return Event{}, fieldErr("failure", "required")
	}
	sig, err := w.Failure.signals()
	if err != nil {
		return Event{}, err
	}
	ev.Failure = sig
	return ev, nil
}

func checkID(id string) error {
	if len(id) > MaxIDLength {
		return fieldErr("id", "%d bytes is over the %d-byte limit", len(id), MaxIDLength)
	}
	for _, r := range id {
		if r == utf8.RuneError || unicode.IsControl(r) {
			return fieldErr("id", "contains a control or invalid character")
		}
	}
	if id == "." || id == ".." {
		// A path segment no escaping changes: a review link to remediation ".."
		// would open the page above it.
		return fieldErr("id", "%q is a path's dot segment; want a name", id)
	}
	return nil
}

func (w *wireJob) job() (Job, error) {
	if strings.TrimSpace(w.Name) == "" {
		return Job{}, fieldErr("job.name", "required")
	}
	for _, f := range []struct{ field, v string }{
		{"job.name", w.Name}, {"job.namespace", w.Namespace}, {"job.uid", w.UID}, {"job.template", w.Template},
		{"job.pipeline", w.Pipeline}, {"job.stage", w.Stage}, {"job.image", w.Image},
	} {
		if err := checkName(f.field, f.v); err != nil {
			return Job{}, err
		}
	}
	kind := JobKind(w.Kind)
	if kind != "" && !kind.Valid() {
		return Job{}, fieldErr("job.kind", "unknown kind %q (want training, compression, deployment or batch)", w.Kind)
	}
	if w.Attempt < 0 {
		return Job{}, fieldErr("job.attempt", "must not be negative, got %d", w.Attempt)
	}
	if w.Attempt > MaxAttempt {
		return Job{}, fieldErr("job.attempt", "%d is over the limit of %d", w.Attempt, MaxAttempt)
	}
	j := Job{
		Namespace: w.Namespace,
		Name:      w.Name,
		UID:       w.UID,
		Kind:      kind,
		Template:  w.Template,
		Pipeline:  w.Pipeline,
		Stage:     w.Stage,
		Attempt:   w.Attempt,
		Image:     w.Image,
	}
	if len(w.Labels) > MaxEntries {
		return Job{}, fieldErr("job.labels", "%d labels is over the limit of %d", len(w.Labels), MaxEntries)
	}
	for k, v := range w.Labels {
		if err := checkName("job.labels", k); err != nil {
			return Job{}, err
		}
		if err := checkValue("job.labels."+k, v); err != nil {
			return Job{}, err
		}
	}
	if len(w.Labels) > 0 {
		j.Labels = w.Labels
	}
	if j.Template == "" {
		j.Template = j.Name
	}
	if j.Attempt == 0 {
		j.Attempt = 1
	}
	res, err := w.Resources.resources("job.resources.")
	if err != nil {
		return Job{}, err
	}
	j.Resources = res
	if j.Tunables, err = tunables(w.Tunables); err != nil {
		return Job{}, err
	}
	if j.Params, err = params(w.Params, j.Tunables); err != nil {
		return Job{}, err
	}
	return j, nil
}

// resources validates w; field names in errors start with prefix.
func (w *wireResources) resources(prefix string) (Resources, error) {
	var (
		r   Resources
		err error
	)
	if r.CPUMillis, err = quantity(prefix+"cpu", w.CPU, 1000); err != nil {
		return Resources{}, err
	}
	if r.CPUMillis > MaxCPUMillis {
		return Resources{}, fieldErr(prefix+"cpu", "%s is over the limit of %d cores", w.CPU, MaxCPUMillis/1000)
	}
	if r.MemoryBytes, err = quantity(prefix+"memory", w.Memory, 1); err != nil {
		return Resources{}, err
	}
	if err := checkBytes(prefix+"memory", w.Memory, r.MemoryBytes); err != nil {
		return Resources{}, err
	}
	if r.EphemeralStorageBytes, err = quantity(prefix+"ephemeralStorage", w.EphemeralStorage, 1); err != nil {
		return Resources{}, err
	}
	if err := checkBytes(prefix+"ephemeralStorage", w.EphemeralStorage, r.EphemeralStorageBytes); err != nil {
		return Resources{}, err
	}
	gpuMillis, err := quantity(prefix+"gpu", w.GPU, 1000)
	if err != nil {
		return Resources{}, err
	}
	if gpuMillis%1000 != 0 || gpuMillis/1000 > MaxGPUs {
		return Resources{}, fieldErr(prefix+"gpu", "want a whole number of GPUs from 0 to %d, got %s", MaxGPUs, w.GPU)
	}
	r.GPU = int(gpuMillis / 1000)
	if err := checkName(prefix+"gpuType", w.GPUType); err != nil {
		return Resources{}, err
	}
	r.GPUType = w.GPUType
	return r, nil
}

// quantity parses a Kubernetes quantity given as a JSON string or number and returns
// it multiplied by scale (1 for bytes, 1000 for millis), rounded up.
func quantity(field string, raw json.RawMessage, scale int64) (int64, error) {
	s := string(bytes.TrimSpace(raw))
	if s == "" || s == "null" || s == `""` {
		return 0, nil
	}
	if s[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, fieldErr(field, "want a quantity string, got %s", raw)
		}
	} else if s[0] != '-' && (s[0] < '0' || s[0] > '9') {
		return 0, fieldErr(field, "want a quantity such as \"16Gi\" or \"500m\", got %s", raw)
	}
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return 0, fieldErr(field, "invalid quantity %q: %v", s, err)
	}
	if q.Sign() < 0 {
		return 0, fieldErr(field, "must not be negative, got %q", s)
	}
	// ParseQuantity clamps what does not fit an int64 to MaxInt64.
	if q.CmpInt64(math.MaxInt64/scale) >= 0 {
		return 0, fieldErr(field, "%q is too large", s)
	}
	if scale == 1000 {
		return q.MilliValue(), nil
	}
	return q.Value(), nil
}

// params decodes the job's parameters, checking the values of the declared tunables.
func params(in map[string]json.RawMessage, declared map[string]Tunable) (map[string]string, error) {
	if len(in) == 0 {
		return nil, nil
	}
	if len(in) > MaxEntries {
		return nil, fieldErr("job.params", "%d params is over the limit of %d", len(in), MaxEntries)
	}
	out := make(map[string]string, len(in))
	for k, raw := range in {
		if err := checkName("job.params", k); err != nil {
			return nil, err
		}
		v := bytes.TrimSpace(raw)
		switch {
		case len(v) == 0 || string(v) == "null":
			out[k] = ""
		case v[0] == '"':
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return nil, fieldErr("job.params."+k, "invalid string")
			}
			out[k] = s
		case v[0] == '{' || v[0] == '[':
			return nil, fieldErr("job.params."+k, "want a string, number or boolean")
		default: // number or boolean: keep its literal text
			out[k] = string(v)
		}
		t, ok := declared[k]
		if err := checkParam(k, out[k], t, ok); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func tunables(in map[string]wireTunable) (map[string]Tunable, error) {
	if len(in) == 0 {
		return nil, nil
	}
	if len(in) > MaxEntries {
		return nil, fieldErr("job.tunables", "%d tunables is over the limit of %d", len(in), MaxEntries)
	}
	out := make(map[string]Tunable, len(in))
	for k, w := range in {
		if err := checkName("job.tunables", k); err != nil {
			return nil, err
		}
		field := "job.tunables." + k
		role := TunableRole(w.Role)
		if !role.Valid() {
			return nil, fieldErr(field+".role", "unknown role %q (want micro_batch, grad_accum, precision, checkpointing, workers or other)", w.Role)
		}
		if err := checkFinite(field+".min", w.Min, -MaxTunableBound, MaxTunableBound); err != nil {
			return nil, err
		}
		if err := checkFinite(field+".max", w.Max, -MaxTunableBound, MaxTunableBound); err != nil {
			return nil, err
		}
		if len(w.Values) > MaxEntries {
			return nil, fieldErr(field+".values", "%d values is over the limit of %d", len(w.Values), MaxEntries)
		}
		for _, v := range w.Values {
			if err := checkValue(field+".values", v); err != nil {
				return nil, err
			}
		}
		if w.Max != 0 && w.Min > w.Max {
			return nil, fieldErr(field, "min %v is above max %v", w.Min, w.Max)
		}
		t := Tunable{Role: role, Min: w.Min, Max: w.Max}
		if len(w.Values) > 0 {
			t.Values = w.Values
		}
		out[k] = t
	}
	return out, nil
}

func (w *wireFailure) signals() (Signals, error) {
	if w.DurationSeconds < 0 {
		return Signals{}, fieldErr("failure.durationSeconds", "must not be negative, got %v", w.DurationSeconds)
	}
	if err := checkFinite("failure.durationSeconds", w.DurationSeconds, 0, MaxDurationSeconds); err != nil {
		return Signals{}, err
	}
	if err := checkValue("failure.reason", w.Reason); err != nil {
		return Signals{}, err
	}
	if err := checkName("failure.node", w.Node); err != nil {
		return Signals{}, err
	}
	if err := checkFinite("failure.cost", w.Cost, 0, MaxCost); err != nil {
		return Signals{}, err
	}
	if err := checkValue("failure.unpriced", w.Unpriced); err != nil {
		return Signals{}, err
	}
	s := Signals{
		Reason:          w.Reason,
		ExitCode:        int(w.ExitCode),
		Message:         w.Message,
		LogTruncated:    w.LogTruncated,
		DurationSeconds: w.DurationSeconds,
		Node:            w.Node,
		Cost:            w.Cost,
		Unpriced:        w.Unpriced,
	}
	s.Message, _ = tail(w.Message, MaxMessageLength)
	s.LogTail, s.LogTruncated = tail(w.LogTail, MaxLogTail)
	s.LogTruncated = s.LogTruncated || w.LogTruncated
	var err error
	if s.Usage, err = w.Usage.usage("failure.usage."); err != nil {
		return Signals{}, err
	}
	return s, nil
}

// usage validates w; field names in errors start with prefix.
func (w *wireUsage) usage(prefix string) (Usage, error) {
	var (
		u   Usage
		err error
	)
	if u.PeakMemoryBytes, err = quantity(prefix+"peakMemory", w.PeakMemory, 1); err != nil {
		return Usage{}, err
	}
	if u.PeakGPUMemoryBytes, err = quantity(prefix+"peakGPUMemory", w.PeakGPUMemory, 1); err != nil {
		return Usage{}, err
	}
	if u.PeakEphemeralStorageBytes, err = quantity(prefix+"peakEphemeralStorage", w.PeakEphemeral, 1); err != nil {
		return Usage{}, err
	}
	for _, c := range []struct {
		field string
		raw   json.RawMessage
		v     int64
	}{{"peakMemory", w.PeakMemory, u.PeakMemoryBytes}, {"peakGPUMemory", w.PeakGPUMemory, u.PeakGPUMemoryBytes},
		{"peakEphemeralStorage", w.PeakEphemeral, u.PeakEphemeralStorageBytes}} {
		if err := checkBytes(prefix+c.field, c.raw, c.v); err != nil {
			return Usage{}, err
		}
	}
	return u, nil
}

// UnmarshalJSON reads resources as MarshalJSON writes them (quantity strings or numbers).
func (r *Resources) UnmarshalJSON(data []byte) error {
	var w wireResources
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	res, err := w.resources("")
	if err != nil {
		return err
	}
	*r = res
	return nil
}

// UnmarshalJSON reads usage as MarshalJSON writes it (quantity strings or numbers).
func (u *Usage) UnmarshalJSON(data []byte) error {
	var w wireUsage
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	v, err := w.usage("")
	if err != nil {
		return err
	}
	*u = v
	return nil
}

// tail returns the last at most max bytes of log, starting on a line boundary when
// one is near and never inside a UTF-8 sequence, and whether it cut anything.
func tail(log string, max int) (string, bool) {
	if len(log) <= max {
		return log, false
	}
	cut := len(log) - max
	for cut < len(log) && !utf8.RuneStart(log[cut]) {
		cut++
	}
	// Prefer to start at a whole line if one starts within the first 1 KiB.
	if nl := strings.IndexByte(log[cut:min(cut+1024, len(log))], '\n'); nl >= 0 {
		cut += nl + 1
	}
	return log[cut:], true
}

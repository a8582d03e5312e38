package driver

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The fields ServerSpec had when identities were fixed; every later one is omitempty.
var requiredFields = map[string]bool{"Service": true, "Revision": true, "Image": true, "Port": true, "Resources": true}

// TestHashIsStable: a server's identity does not change with kiln. A spec of every
// field's zero value beyond the first ones hashes as it did, and a new field that is not
// omitempty (which would change every server's identity, and so replace the whole fleet
// at an upgrade) fails here.
func TestHashIsStable(t *testing.T) {
	ty := reflect.TypeOf(ServerSpec{})
	for i := range ty.NumField() {
		f := ty.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" || requiredFields[f.Name] {
			continue
		}
		if !strings.Contains(tag, ",omitempty") {
			t.Errorf("ServerSpec.%s is not omitempty: adding it changes every server's identity", f.Name)
		}
	}
	// The identity of a server as this version of kiln creates it (and the one before:
	// a service without env keeps its servers across that upgrade): if this changes,
	// running fleets are replaced on upgrade.
	basic := ServerSpec{Service: "web", Image: "sha256:aaaa", Port: 8080, Resources: DefaultResources}
	if got, want := basic.Hash(), "d4533fd88f672df7928e72f27b027713cb684e1f9b61ae64836fcce6264d96dc"; got != want {
		t.Errorf("the hash of a basic spec is %s, was %s: an upgrade would replace every server", got, want)
	}
	full := basic
	full.Project, full.Command, full.Args, full.User = "p", []string{"/app"}, []string{"-v"}, "65532"
	full.Digests = map[string]string{"env:A": "hmac-sha256:00"}
	full.Init, full.StopSignal, full.StopTimeout, full.Writable = true, "SIGINT", time.Second, []string{"/tmp"}
	if full.Hash() == basic.Hash() {
		t.Error("the fields do not enter the hash")
	}
	full.Revision = 9
	if h := full.Hash(); h != func() string { full.Revision = 0; return full.Hash() }() {
		t.Error("the revision enters the hash")
	}
}

// fullSpec sets every field of ServerSpec (TestIdentityIgnoresZeroFields checks that
// it does, so a new field must be set here too).
func fullSpec() ServerSpec {
	return ServerSpec{Project: "p", Service: "web", Revision: 3, Image: "sha256:aaaa",
		Command: []string{"/app"}, Args: []string{"-v"},
		Env: map[string]string{"A": "1"}, Files: map[string][]byte{"/run/f": []byte("x")},
		Digests: map[string]string{"env:A": "hmac-sha256:00", "file:/run/f": "hmac-sha256:01"},
		User:    "65532", Init: true, StopSignal: "SIGINT", StopTimeout: time.Second, Port: 8080,
		Writable: []string{"/tmp"}, Resources: Resources{CPUs: 0.5, MemoryBytes: 1 << 20, PIDs: 9}, Role: RoleCandidate,
		Probe: &Probe{HTTPPath: "/healthz", Period: time.Second}}
}

// copyInto sets the fields of the struct dst that src has, by name.
func copyInto(dst, src reflect.Value) {
	for i := range dst.NumField() {
		if f := src.FieldByName(dst.Type().Field(i).Name); f.IsValid() && f.Type().AssignableTo(dst.Field(i).Type()) {
			dst.Field(i).Set(f)
		}
	}
}

// TestIdentityIgnoresZeroFields: a server's identity (Hash, Identity, Canonical) does not
// change when ServerSpec gains a field. For every field but the first ones, a spec with
// it at its zero value encodes as a ServerSpec without that field did (so servers made
// before it existed keep their identity); and a field of any kind added at its zero
// value, to ServerSpec or to Resources, leaves every identity as it is.
func TestIdentityIgnoresZeroFields(t *testing.T) {
	ty := reflect.TypeOf(ServerSpec{})
	full := fullSpec()
	fv := reflect.ValueOf(full)
	for i := range ty.NumField() {
		if fv.Field(i).IsZero() {
			t.Fatalf("fullSpec leaves ServerSpec.%s zero: set it", ty.Field(i).Name)
		}
	}
	encode := func(v reflect.Value) string { return hashOf(canonicalJSON(v.Interface())) }

	for i := range ty.NumField() {
		f := ty.Field(i)
		if requiredFields[f.Name] || f.Tag.Get("json") == "-" {
			continue
		}
		spec := full
		spec.Revision = 0
		reflect.ValueOf(&spec).Elem().Field(i).SetZero()
		var fields []reflect.StructField
		for j := range ty.NumField() {
			if j != i {
				fields = append(fields, ty.Field(j))
			}
		}
		older := reflect.New(reflect.StructOf(fields)).Elem()
		copyInto(older, reflect.ValueOf(spec))
		if got, want := spec.Hash(), encode(older); got != want {
			t.Errorf("ServerSpec.%s at its zero value changes the hash (%s) of a spec made before it existed (%s)", f.Name, got, want)
		}
		if got, want := spec.Identity(), IdentityOf(encode(older)); got != want {
			t.Errorf("ServerSpec.%s at its zero value changes the short identity: %s, was %s", f.Name, got, want)
		}
		if got, want := string(spec.Canonical()), CanonicalV1+string(canonicalJSON(older.Interface())); got != want {
			t.Errorf("ServerSpec.%s at its zero value changes the canonical encoding:\n%s\nwas\n%s", f.Name, got, want)
		}
	}

	// A field added later, of each kind, at its zero value.
	type sub struct {
		X int `json:"x,omitempty"`
	}
	added := []reflect.StructField{
		{Name: "AddedString", Type: reflect.TypeFor[string](), Tag: `json:"added,omitempty"`},
		{Name: "AddedInt", Type: reflect.TypeFor[int64](), Tag: `json:"added,omitempty"`},
		{Name: "AddedFloat", Type: reflect.TypeFor[float64](), Tag: `json:"added,omitempty"`},
		{Name: "AddedBool", Type: reflect.TypeFor[bool](), Tag: `json:"added,omitempty"`},
		{Name: "AddedDuration", Type: reflect.TypeFor[time.Duration](), Tag: `json:"added,omitempty"`},
		{Name: "AddedSlice", Type: reflect.TypeFor[[]string](), Tag: `json:"added,omitempty"`},
		{Name: "AddedMap", Type: reflect.TypeFor[map[string]string](), Tag: `json:"added,omitempty"`},
		{Name: "AddedPointer", Type: reflect.TypeFor[*sub](), Tag: `json:"added,omitempty"`},
		{Name: "AddedStruct", Type: reflect.TypeFor[sub](), Tag: `json:"added,omitzero"`},
	}
	spec := full
	spec.Revision = 0
	for _, a := range added {
		var fields []reflect.StructField
		for j := range ty.NumField() {
			fields = append(fields, ty.Field(j))
		}
		newer := reflect.New(reflect.StructOf(append(fields, a))).Elem()
		copyInto(newer, reflect.ValueOf(spec))
		if got := encode(newer); got != spec.Hash() {
			t.Errorf("a %s field added to ServerSpec at its zero value changes the hash: %s, was %s", a.Type, got, spec.Hash())
		}

		// The same field added to Resources.
		rt := reflect.TypeOf(Resources{})
		var rfields []reflect.StructField
		for j := range rt.NumField() {
			rfields = append(rfields, rt.Field(j))
		}
		res := reflect.New(reflect.StructOf(append(rfields, a))).Elem()
		copyInto(res, reflect.ValueOf(spec.Resources))
		for j := range fields {
			if fields[j].Name == "Resources" {
				fields[j].Type = res.Type()
			}
		}
		withRes := reflect.New(reflect.StructOf(fields)).Elem()
		copyInto(withRes, reflect.ValueOf(spec))
		withRes.FieldByName("Resources").Set(res)
		if got := encode(withRes); got != spec.Hash() {
			t.Errorf("a %s field added to Resources at its zero value changes the hash: %s, was %s", a.Type, got, spec.Hash())
		}
	}
	for i := range reflect.TypeOf(Resources{}).NumField() {
		f := reflect.TypeOf(Resources{}).Field(i)
		if f.Name != "MemoryBytes" && f.Name != "PIDs" && !strings.Contains(f.Tag.Get("json"), ",omitempty") {
			t.Errorf("Resources.%s is not omitempty: adding it changes every server's identity", f.Name)
		}
	}
}

// TestIdentity pins the short identity and the canonical encoding of the basic spec:
// both are read from the hash and spec recorded on running servers, so they may never
// change for a spec kiln made before.
func TestIdentity(t *testing.T) {
	basic := ServerSpec{Service: "web", Image: "sha256:aaaa", Port: 8080, Resources: DefaultResources}
	if got, want := basic.Identity(), "d4533fd88f672df7928e72f27b027713"; got != want {
		t.Errorf("the identity of a basic spec is %s, was %s", got, want)
	}
	if got, want := string(basic.Canonical()), CanonicalV1+`{"service":"web","revision":0,"image":"sha256:aaaa","port":8080,"resources":{"memory_bytes":268435456,"pids":256}}`; got != want {
		t.Errorf("the canonical encoding of a basic spec is\n%s\nwas\n%s", got, want)
	}
	if !strings.HasPrefix(string(basic.Canonical()), CanonicalV1) || hashOf([]byte(strings.TrimPrefix(string(basic.Canonical()), CanonicalV1))) != basic.Hash() {
		t.Error("Hash is not the SHA-256 of the v1 encoding's body")
	}
	// The identity of a server already running is read from its label.
	old := Server{SpecHash: basic.Hash(), Spec: basic}
	if old.Identity() != basic.Identity() || len(old.Identity()) > 63 {
		t.Errorf("a server's identity %q, its spec's %q", old.Identity(), basic.Identity())
	}
	for _, c := range old.Identity() {
		if (c < '0' || c > '9') && (c < 'a' || c > 'z') {
			t.Errorf("identity %q is not a Kubernetes label value of [a-z0-9]", old.Identity())
		}
	}
	for _, bad := range []string{"", "d4533f", strings.ToUpper(basic.Hash()), "zz" + basic.Hash()[2:]} {
		if got := IdentityOf(bad); got != "" {
			t.Errorf("IdentityOf(%q) = %q, want none", bad, got)
		}
	}
	withRev := basic
	withRev.Revision = 5
	if withRev.Identity() != basic.Identity() || string(withRev.Canonical()) != string(basic.Canonical()) {
		t.Error("the revision enters the identity")
	}
}

func TestConfigOptions(t *testing.T) {
	cfg := Config{Options: map[string]string{"stop_timeout": "3s", "tmpfs_size": "1024"}}
	if err := cfg.CheckOptions("stop_timeout", "tmpfs_size"); err != nil {
		t.Error(err)
	}
	if err := cfg.CheckOptions("stop_timeout"); !errors.Is(err, ErrUnknownOption) {
		t.Errorf("an unknown option: %v, want ErrUnknownOption", err)
	}
	if d, err := cfg.Duration("stop_timeout", time.Minute); err != nil || d != 3*time.Second {
		t.Errorf("Duration = %v, %v", d, err)
	}
	if d, err := cfg.Duration("absent", time.Minute); err != nil || d != time.Minute {
		t.Errorf("Duration of an absent option = %v, %v; want the default", d, err)
	}
	if n, err := cfg.Int("tmpfs_size", 0); err != nil || n != 1024 {
		t.Errorf("Int = %v, %v", n, err)
	}
	if _, err := (Config{Options: map[string]string{"x": "ten"}}).Int("x", 0); err == nil {
		t.Error("Int accepted a word")
	}
}

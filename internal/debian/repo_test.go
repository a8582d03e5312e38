package debian

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// This file builds what the hermetic tests read: .deb files made here (ar, control.tar
// and data.tar, as dpkg-deb writes them), and a test repository, a real HTTP server on
// loopback serving a real signed dists/ and pool/ tree made of them, with a key made
// for the test. Its tamper hook alters what it serves, to force the faults a real
// repository cannot be made to produce.

// testFile is one entry of a test package's data.tar.
type testFile struct {
	name     string // as in the tar: "./usr/bin/x", "./bin/"
	typ      byte
	mode     int64
	uid, gid int
	body     string
	link     string
}

type testPkg struct {
	name, version, arch string
	fields              string // more control fields, "Key: value" lines
	files               []testFile
}

// buildDeb writes a .deb of p: debian-binary, control.tar.gz (control, md5sums),
// data.tar.gz.
func buildDeb(t testing.TB, p testPkg) []byte {
	t.Helper()
	if p.arch == "" {
		p.arch = "amd64"
	}
	ctl := fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: %s\nMaintainer: kiln tests\n%sDescription: a test package\n", p.name, p.version, p.arch, p.fields)
	var md5s strings.Builder
	for _, f := range p.files {
		if f.typ == tar.TypeReg {
			fmt.Fprintf(&md5s, "00000000000000000000000000000000  %s\n", strings.TrimPrefix(f.name, "./"))
		}
	}
	control := tarGz(t, []testFile{
		{name: "./", typ: tar.TypeDir, mode: 0o755},
		{name: "./control", typ: tar.TypeReg, mode: 0o644, body: ctl},
		{name: "./md5sums", typ: tar.TypeReg, mode: 0o644, body: md5s.String()},
	})
	data := tarGz(t, append([]testFile{{name: "./", typ: tar.TypeDir, mode: 0o755}}, p.files...))
	var ar bytes.Buffer
	ar.WriteString("!<arch>\n")
	member := func(name string, b []byte) {
		fmt.Fprintf(&ar, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", name, 0, 0, 0, "100644", len(b))
		ar.Write(b)
		if len(b)%2 == 1 {
			ar.WriteByte('\n')
		}
	}
	member("debian-binary", []byte("2.0\n"))
	member("control.tar.gz", control)
	member("data.tar.gz", data)
	return ar.Bytes()
}

func tarGz(t testing.TB, files []testFile) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Typeflag: f.typ, Mode: f.mode, Uid: f.uid, Gid: f.gid, Linkname: f.link, ModTime: time.Unix(1700000000, 0), Uname: "root", Gname: "root"}
		if f.typ == tar.TypeReg {
			h.Size = int64(len(f.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if f.typ == tar.TypeReg {
			tw.Write([]byte(f.body))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	return buf.Bytes()
}

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// testKey is an OpenPGP key made once for the tests, and its public keyring file.
var testKey = sync.OnceValues(func() (*openpgp.Entity, error) {
	return newTestKey("kiln test archive")
})

// keyEpoch is when test keys are made and test Release files signed: before any date
// the tests check against, as a real archive key is.
var keyEpoch = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

func newTestKey(name string) (*openpgp.Entity, error) {
	return openpgp.NewEntity(name, "", "archive@kiln.test", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Time: func() time.Time { return keyEpoch }})
}

func writeKeyring(t testing.TB, e *openpgp.Entity) string {
	t.Helper()
	var buf bytes.Buffer
	if err := e.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "keyring.gpg")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func clearsignText(t testing.TB, e *openpgp.Entity, text string) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := clearsign.Encode(&buf, e.PrivateKey, &packet.Config{Time: func() time.Time { return keyEpoch }})
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(text))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// testRepo is a signed repository of one suite served on loopback.
type testRepo struct {
	srv     *httptest.Server
	keyring string
	suite   string
	files   map[string][]byte // path under the root → content
	mu      sync.Mutex
	tamper  map[string]func([]byte) []byte // path → how to alter it when served
	hits    map[string]int
}

// newTestRepo serves pkgs as suite "testing" (main, amd64), its Release dated date and
// valid until validUntil (none when zero).
func newTestRepo(t testing.TB, pkgs []testPkg, date, validUntil time.Time) *testRepo {
	t.Helper()
	key, err := testKey()
	if err != nil {
		t.Fatal(err)
	}
	r := &testRepo{keyring: writeKeyring(t, key), suite: "testing", files: map[string][]byte{}, tamper: map[string]func([]byte) []byte{}, hits: map[string]int{}}
	var index strings.Builder
	for _, p := range pkgs {
		b := buildDeb(t, p)
		arch := p.arch
		if arch == "" {
			arch = "amd64"
		}
		fn := fmt.Sprintf("pool/main/%s/%s_%s_%s.deb", p.name[:1], p.name, p.version, arch)
		r.files[fn] = b
		fmt.Fprintf(&index, "Package: %s\nVersion: %s\nArchitecture: %s\n%sFilename: %s\nSize: %d\nSHA256: %s\nDescription: a test package\n\n", p.name, p.version, arch, p.fields, fn, len(b), sha256hex(b))
	}
	plain := []byte(index.String())
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(plain)
	zw.Close()
	dist := "dists/" + r.suite + "/"
	r.files[dist+"main/binary-amd64/Packages.gz"] = gz.Bytes()
	rel := fmt.Sprintf("Origin: kiln\nSuite: %s\nCodename: %s\nDate: %s\n", r.suite, r.suite, date.UTC().Format(time.RFC1123))
	if !validUntil.IsZero() {
		rel += "Valid-Until: " + validUntil.UTC().Format(time.RFC1123) + "\n"
	}
	rel += "Architectures: amd64\nComponents: main\nSHA256:\n"
	rel += fmt.Sprintf(" %s %d main/binary-amd64/Packages\n", sha256hex(plain), len(plain))
	rel += fmt.Sprintf(" %s %d main/binary-amd64/Packages.gz\n", sha256hex(gz.Bytes()), gz.Len())
	r.files[dist+"InRelease"] = clearsignText(t, key, rel)
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		p := strings.TrimPrefix(req.URL.Path, "/")
		r.mu.Lock()
		b, ok := r.files[p]
		if f := r.tamper[p]; f != nil && ok {
			b = f(bytes.Clone(b))
		}
		r.hits[p]++
		r.mu.Unlock()
		if !ok {
			http.NotFound(w, req)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *testRepo) repository() Repository {
	return Repository{URI: r.srv.URL, Suite: r.suite, Keyring: r.keyring}
}

func (r *testRepo) setTamper(path string, f func([]byte) []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tamper[path] = f
}

func (r *testRepo) hitCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, v := range r.hits {
		n += v
	}
	return n
}

// flipByte changes one byte in the middle of b.
func flipByte(b []byte) []byte {
	b[len(b)/2] ^= 0x01
	return b
}

// tarEntries reads an uncompressed tar into its headers and contents, in order.
func tarEntries(t testing.TB, b []byte) ([]*tar.Header, map[string]string) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	var hs []*tar.Header
	body := map[string]string{}
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		hs = append(hs, h)
		var buf bytes.Buffer
		buf.ReadFrom(tr)
		body[h.Name] = buf.String()
	}
	return hs, body
}

func headerNames(hs []*tar.Header) []string {
	var out []string
	for _, h := range hs {
		out = append(out, h.Name)
	}
	return out
}

package bake

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"pault.ag/go/debian/control"

	"github.com/kiln-build/kiln/internal/atomicfile"
)

// osPackage is one package of a base's OS package manager.
type osPackage struct {
	Type    string `json:"type"` // "deb" or "apk", as in its purl
	Name    string `json:"name"`
	Version string `json:"version"`
	Arch    string `json:"arch,omitempty"`
	Source  string `json:"source,omitempty"` // the source package, when it has another name
}

// osInventory is what a base's filesystem says of its OS: the distribution
// (/etc/os-release) and the packages its package database lists as installed.
type osInventory struct {
	Distro    string      `json:"distro,omitempty"` // os-release ID: debian, ubuntu, alpine...
	VersionID string      `json:"version_id,omitempty"`
	Packages  []osPackage `json:"packages,omitempty"`
}

// The files an inventory is read from, as paths in a layer.
const (
	dpkgStatus    = "var/lib/dpkg/status"
	dpkgStatusDir = "var/lib/dpkg/status.d" // one file per package (distroless)
	apkInstalled  = "lib/apk/db/installed"
	maxDBBytes    = 64 << 20
)

var osReleases = []string{"etc/os-release", "usr/lib/os-release"}

func inventoryFile(name string) bool {
	return name == dpkgStatus || name == apkInstalled || slices.Contains(osReleases, name) ||
		(path.Dir(name) == dpkgStatusDir && !strings.HasSuffix(name, ".md5sums"))
}

// scanOS reads the inventory of the filesystem layers make, applying whiteouts, so a
// package database removed or replaced by a later layer is not read. It reads every
// layer once; baseInventory caches the result.
func scanOS(layers []v1.Layer) (osInventory, error) {
	files := map[string][]byte{}
	for i, l := range layers {
		if err := scanLayer(l, files); err != nil {
			return osInventory{}, fmt.Errorf("layer %d: %w", i+1, err)
		}
	}
	var inv osInventory
	for _, p := range osReleases {
		if b, ok := files[p]; ok {
			inv.Distro, inv.VersionID = parseOSRelease(b)
			break
		}
	}
	var pkgs []osPackage
	var dpkg [][]byte
	if b, ok := files[dpkgStatus]; ok {
		dpkg = append(dpkg, b)
	}
	for _, p := range slices.Sorted(maps.Keys(files)) {
		if path.Dir(p) == dpkgStatusDir {
			dpkg = append(dpkg, files[p])
		}
	}
	for _, b := range dpkg {
		ps, err := parseDpkgStatus(b)
		if err != nil {
			return osInventory{}, err
		}
		pkgs = append(pkgs, ps...)
	}
	if b, ok := files[apkInstalled]; ok {
		pkgs = append(pkgs, parseAPKInstalled(b)...)
	}
	slices.SortFunc(pkgs, func(a, b osPackage) int {
		return strings.Compare(a.Type+"/"+a.Name+"@"+a.Version+"/"+a.Arch, b.Type+"/"+b.Name+"@"+b.Version+"/"+b.Arch)
	})
	inv.Packages = slices.Compact(pkgs)
	return inv, nil
}

// scanLayer applies one layer to files: its whiteouts first (they hide what the layers
// below hold), then the inventory files it holds.
func scanLayer(l v1.Layer, files map[string][]byte) error {
	rc, err := l.Uncompressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	added := map[string][]byte{}
	remove := func(p string) {
		for k := range files {
			if k == p || strings.HasPrefix(k, p+"/") || p == "" {
				delete(files, k)
			}
		}
	}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		if gone, _, ok := whiteout("/" + name); ok {
			remove(strings.TrimPrefix(gone, "/")) // "" for the root: everything
			continue
		}
		// Anything written over an inventory file replaces it; only a regular file is
		// read as one.
		delete(files, name)
		if h.Typeflag == tar.TypeReg && inventoryFile(name) {
			if h.Size > maxDBBytes {
				return fmt.Errorf("%s is %d bytes, more than the %d read", name, h.Size, maxDBBytes)
			}
			b, err := io.ReadAll(tr)
			if err != nil {
				return err
			}
			added[name] = b
		}
	}
	for k, v := range added {
		files[k] = v
	}
	return nil
}

// parseOSRelease returns ID and VERSION_ID of an os-release file.
func parseOSRelease(b []byte) (id, version string) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok {
			continue
		}
		v = strings.Trim(v, `"'`)
		switch k {
		case "ID":
			id = v
		case "VERSION_ID":
			version = v
		}
	}
	return id, version
}

// parseDpkgStatus lists the installed packages of a dpkg status file (or of one file of
// status.d, which has no Status field).
func parseDpkgStatus(b []byte) ([]osPackage, error) {
	r, err := control.NewParagraphReader(bytes.NewReader(b), nil)
	if err != nil {
		return nil, fmt.Errorf("reading the dpkg status: %w", err)
	}
	var out []osPackage
	for {
		p, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading the dpkg status: %w", err)
		}
		v := p.Values
		if v["Package"] == "" || v["Version"] == "" {
			continue
		}
		if st := strings.Fields(v["Status"]); v["Status"] != "" && (len(st) != 3 || st[2] != "installed") {
			continue
		}
		pkg := osPackage{Type: "deb", Name: v["Package"], Version: v["Version"], Arch: v["Architecture"]}
		if src, _, _ := strings.Cut(v["Source"], " "); src != "" && src != pkg.Name {
			pkg.Source = src
		}
		out = append(out, pkg)
	}
}

// parseAPKInstalled lists the packages of Alpine's installed database: stanzas of
// one-letter keys (P name, V version, A arch, o origin) separated by blank lines.
func parseAPKInstalled(b []byte) []osPackage {
	var out []osPackage
	var cur osPackage
	flush := func() {
		if cur.Name != "" && cur.Version != "" {
			cur.Type = "apk"
			if cur.Source == cur.Name {
				cur.Source = ""
			}
			out = append(out, cur)
		}
		cur = osPackage{}
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			flush()
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch k {
		case "P":
			cur.Name = v
		case "V":
			cur.Version = v
		case "A":
			cur.Arch = v
		case "o":
			cur.Source = v
		}
	}
	flush()
	return out
}

// baseInventory is the inventory of the filesystem layers make, cached by their diff IDs
// (which name their content) in .kiln/cache/os.
func (b *Baker) baseInventory(layers []v1.Layer) (osInventory, error) {
	var ids []string
	for _, l := range layers {
		d, err := l.DiffID()
		if err != nil {
			return osInventory{}, err
		}
		ids = append(ids, d.String())
	}
	k := key(map[string]any{"kind": "os-inventory-v1", "diff_ids": ids})
	p := filepath.Join(filepath.Dir(b.cache.dir), "os", k+".json")
	if raw, err := os.ReadFile(p); err == nil {
		var inv osInventory
		if json.Unmarshal(raw, &inv) == nil {
			return inv, nil
		}
	}
	inv, err := scanOS(layers)
	if err != nil {
		return osInventory{}, err
	}
	raw, err := json.Marshal(inv)
	if err != nil {
		return osInventory{}, err
	}
	if err := os.MkdirAll(filepath.Dir(p), dirPerm); err != nil {
		return osInventory{}, err
	}
	return inv, atomicfile.Write(p, raw, filePerm)
}

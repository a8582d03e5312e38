package debian

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"pault.ag/go/debian/control"
	"pault.ag/go/debian/deb"
)

// LayerOptions say how WriteLayer lays out the packages' files.
type LayerOptions struct {
	// ModTime is every entry's modification time (SOURCE_DATE_EPOCH, or 0).
	ModTime time.Time
	// NoDocs leaves out usr/share/man, usr/share/info and usr/share/doc, except each
	// package's copyright file (its licence), as distroless does.
	NoDocs bool
	// TempDir is where file contents are spooled while the layer is sorted; the
	// system's temporary directory when "".
	TempDir string
}

// Installed is one package a layer holds, as its control file says.
type Installed struct {
	Name    string
	Version string
	Arch    string
	Source  string // the source package, when it has another name than Name
}

// StatusDir is where a layer records its packages, one file per package with the
// package's control fields (and NAME.md5sums beside it), as distroless does: dpkg's
// status database in a form that layers can add to without rewriting one file, and
// that scanners (and kiln's SBOM) read.
const StatusDir = "var/lib/dpkg/status.d"

// mergedDirs are the top-level directories that a merged-/usr system has as symlinks
// into /usr. Debian 12's packages still ship some files under them (bash in /bin,
// the dynamic loader in /lib64); Debian 12 systems are installed merged (debootstrap's
// default), and Debian 13 requires it, so the layer relocates those files into /usr and
// writes the symlinks itself, as the usrmerge package would have.
var mergedDirs = []string{"bin", "sbin", "lib", "lib32", "lib64", "libx32"}

// WriteLayer writes the files of the .deb files debs into w as one uncompressed tar,
// the way dpkg would unpack them but running no maintainer script: entries sorted by
// path, owners and modes as the packages have them (numeric, no names), every time
// set to opts.ModTime, hard links and symlinks kept, a merged /usr (see mergedDirs),
// and the control file of each package under StatusDir. Packages are laid out in the
// order of their names, so where two ship the same path, the one whose name sorts
// last wins, and a directory keeps the first mode seen. The same .debs and options give
// the same bytes.
//
// One thing that a maintainer script would make is made: the CA bundle that
// ca-certificates' postinst writes (update-ca-certificates), so that TLS clients work.
// Others (alternatives, users, byte-compiled Python) are not; see the package doc.
func WriteLayer(w io.Writer, debs []string, opts LayerOptions) ([]Installed, error) {
	spool, err := os.CreateTemp(opts.TempDir, "kiln-deb-spool-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(spool.Name())
	defer spool.Close()
	lb := &layerBuilder{opts: opts, spool: spool, nodes: map[string]*node{}}

	var pkgs []*debFile
	for _, p := range debs {
		d, err := openDeb(p)
		if err != nil {
			return nil, err
		}
		defer d.close()
		pkgs = append(pkgs, d)
	}
	slices.SortStableFunc(pkgs, func(a, b *debFile) int { return strings.Compare(a.info.Name, b.info.Name) })
	var out []Installed
	for i, d := range pkgs {
		if i > 0 && pkgs[i-1].info.Name == d.info.Name {
			return nil, fmt.Errorf("two .debs of package %s (%s and %s)", d.info.Name, pkgs[i-1].path, d.path)
		}
		if err := lb.addData(d); err != nil {
			return nil, fmt.Errorf("unpacking %s %s (%s): %w", d.info.Name, d.info.Version, d.path, err)
		}
		lb.addFile(path.Join(StatusDir, d.info.Name), 0o644, d.control)
		if len(d.md5sums) > 0 {
			lb.addFile(path.Join(StatusDir, d.info.Name+".md5sums"), 0o644, d.md5sums)
		}
		out = append(out, d.info)
	}
	if err := lb.caBundle(); err != nil {
		return nil, err
	}
	lb.mergeUsr()
	if err := lb.write(w); err != nil {
		return nil, err
	}
	return out, nil
}

// debFile is an opened .deb: its control fields, and the ar member of its data.
type debFile struct {
	path    string
	f       *os.File
	info    Installed
	control []byte
	md5sums []byte
	data    *deb.ArEntry
}

func (d *debFile) close() { d.f.Close() }

// openDeb reads the ar archive of a .deb (format 2.0): its control.tar's control and
// md5sums files, and where its data.tar is.
func openDeb(p string) (*debFile, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	d := &debFile{path: p, f: f}
	fail := func(err error) (*debFile, error) {
		f.Close()
		return nil, fmt.Errorf("reading the .deb %s: %w", p, err)
	}
	ar, err := deb.LoadAr(f)
	if err != nil {
		return fail(err)
	}
	version := ""
	for {
		m, err := ar.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fail(err)
		}
		switch {
		case m.Name == "debian-binary":
			b, err := io.ReadAll(io.LimitReader(m.Data, 64))
			if err != nil {
				return fail(err)
			}
			version = string(b)
		case strings.HasPrefix(m.Name, "control.tar"):
			if err := d.readControl(m); err != nil {
				return fail(err)
			}
		case strings.HasPrefix(m.Name, "data.tar"):
			d.data = m
		}
	}
	switch {
	case !strings.HasPrefix(version, "2."):
		return fail(fmt.Errorf("it is not a .deb of format 2.x (debian-binary says %q)", version))
	case d.control == nil:
		return fail(errors.New("it has no control file"))
	case d.data == nil:
		return fail(errors.New("it has no data.tar"))
	}
	pr, err := control.NewParagraphReader(bytes.NewReader(d.control), nil)
	if err != nil {
		return fail(err)
	}
	para, err := pr.Next()
	if err != nil {
		return fail(fmt.Errorf("its control file: %w", err))
	}
	v := para.Values
	d.info = Installed{Name: v["Package"], Version: v["Version"], Arch: v["Architecture"]}
	if src, _, _ := strings.Cut(v["Source"], " "); src != "" && src != d.info.Name {
		d.info.Source = src
	}
	if d.info.Name == "" || d.info.Version == "" || strings.ContainsAny(d.info.Name, "/\x00") || strings.HasPrefix(d.info.Name, ".") {
		return fail(fmt.Errorf("its control file names no valid package and version (%q %q)", d.info.Name, d.info.Version))
	}
	return d, nil
}

// maxControlBytes bounds a control.tar member read into memory.
const maxControlBytes = 16 << 20

func (d *debFile) readControl(m *deb.ArEntry) error {
	tr, closer, err := m.Tarfile()
	if err != nil {
		return err
	}
	defer closer.Close()
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("its control.tar: %w", err)
		}
		var dst *[]byte
		switch path.Clean(h.Name) {
		case "control":
			dst = &d.control
		case "md5sums":
			dst = &d.md5sums
		default:
			continue
		}
		b, err := io.ReadAll(io.LimitReader(tr, maxControlBytes))
		if err != nil {
			return err
		}
		*dst = b
	}
}

// node is one entry of the layer.
type node struct {
	path     string // relative, cleaned, no trailing slash
	typ      byte
	mode     int64
	uid, gid int
	link     string // a symlink's target, or a hard link's (a path in the layer)
	off      int64  // content in the spool
	size     int64
	data     []byte // content made here, not spooled
}

type layerBuilder struct {
	opts  LayerOptions
	spool *os.File
	end   int64
	nodes map[string]*node
}

// relocate maps a path of a package to where it lands on a merged-/usr system.
func relocate(p string) string {
	top, _, _ := strings.Cut(p, "/")
	if slices.Contains(mergedDirs, top) {
		return "usr/" + p
	}
	return p
}

// cleanName makes a tar entry's name relative and clean ("./usr/bin/" → "usr/bin");
// "" for the root.
func cleanName(n string) string {
	c := strings.TrimPrefix(path.Clean("/"+n), "/")
	return c
}

func (lb *layerBuilder) addData(d *debFile) error {
	tr, closer, err := d.data.Tarfile()
	if err != nil {
		return err
	}
	defer closer.Close()
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("its data.tar: %w", err)
		}
		orig := cleanName(h.Name)
		if orig == "" {
			continue
		}
		p := relocate(orig)
		if slices.Contains(mergedDirs, orig) && h.Typeflag != tar.TypeDir {
			continue // the symlink into /usr stands for it
		}
		if lb.opts.NoDocs && isDoc(p) {
			continue
		}
		n := &node{path: p, typ: h.Typeflag, mode: h.Mode & 0o7777, uid: h.Uid, gid: h.Gid}
		switch h.Typeflag {
		case tar.TypeDir:
			if prev, ok := lb.nodes[p]; ok && prev.typ == tar.TypeDir {
				continue // the first package's directory stays
			}
		case tar.TypeReg, tar.TypeRegA:
			n.typ = tar.TypeReg
			n.off, n.size = lb.end, h.Size
			k, err := io.Copy(lb.spool, tr)
			if err != nil {
				return fmt.Errorf("%s: %w", orig, err)
			}
			if k != h.Size {
				return fmt.Errorf("%s: %d bytes, its header says %d", orig, k, h.Size)
			}
			lb.end += k
		case tar.TypeSymlink:
			n.link = h.Linkname
			if p != orig && !path.IsAbs(h.Linkname) {
				// A relative target was relative to where the package put it: keep
				// it pointing at the same file from where it lands.
				abs := relocate(cleanName(path.Join(path.Dir(orig), h.Linkname)))
				if rel, ok := relPath(path.Dir(p), abs); ok {
					n.link = rel
				}
			}
		case tar.TypeLink:
			n.link = relocate(cleanName(h.Linkname))
		default:
			return fmt.Errorf("%s is a tar entry of type %q, which a package layer does not take", orig, h.Typeflag)
		}
		lb.nodes[p] = n
	}
}

// isDoc is what LayerOptions.NoDocs leaves out.
func isDoc(p string) bool {
	switch {
	case strings.HasPrefix(p, "usr/share/man/"), strings.HasPrefix(p, "usr/share/info/"):
		return true
	case strings.HasPrefix(p, "usr/share/doc/"):
		rest := strings.TrimPrefix(p, "usr/share/doc/")
		return strings.Contains(rest, "/") && path.Base(rest) != "copyright"
	}
	return false
}

// relPath is target relative to dir (both relative to the root).
func relPath(dir, target string) (string, bool) {
	if dir == "." {
		dir = ""
	}
	ds := strings.Split(dir, "/")
	if dir == "" {
		ds = nil
	}
	ts := strings.Split(target, "/")
	i := 0
	for i < len(ds) && i < len(ts) && ds[i] == ts[i] {
		i++
	}
	parts := slices.Repeat([]string{".."}, len(ds)-i)
	parts = append(parts, ts[i:]...)
	if len(parts) == 0 {
		return ".", true
	}
	return strings.Join(parts, "/"), true
}

func (lb *layerBuilder) addFile(p string, mode int64, data []byte) {
	lb.nodes[p] = &node{path: p, typ: tar.TypeReg, mode: mode, data: data, size: int64(len(data))}
}

// caBundle writes etc/ssl/certs/ca-certificates.crt as update-ca-certificates does
// with ca-certificates' default configuration (every certificate it ships trusted):
// the certificates under usr/share/ca-certificates, concatenated in path order.
func (lb *layerBuilder) caBundle() error {
	const bundle = "etc/ssl/certs/ca-certificates.crt"
	if _, ok := lb.nodes[path.Join(StatusDir, "ca-certificates")]; !ok {
		return nil
	}
	if _, ok := lb.nodes[bundle]; ok {
		return nil
	}
	var certs []string
	for p, n := range lb.nodes {
		if strings.HasPrefix(p, "usr/share/ca-certificates/") && strings.HasSuffix(p, ".crt") && n.typ == tar.TypeReg {
			certs = append(certs, p)
		}
	}
	slices.Sort(certs)
	var buf bytes.Buffer
	for _, p := range certs {
		b, err := lb.content(lb.nodes[p])
		if err != nil {
			return err
		}
		buf.Write(b)
		if len(b) > 0 && b[len(b)-1] != '\n' {
			buf.WriteByte('\n')
		}
	}
	lb.addFile(bundle, 0o644, buf.Bytes())
	return nil
}

func (lb *layerBuilder) content(n *node) ([]byte, error) {
	if n.data != nil {
		return n.data, nil
	}
	b := make([]byte, n.size)
	_, err := lb.spool.ReadAt(b, n.off)
	return b, err
}

// mergeUsr adds the symlinks of a merged /usr: bin, sbin and lib always, the other
// library directories where usr/ has them.
func (lb *layerBuilder) mergeUsr() {
	for _, d := range mergedDirs {
		_, has := lb.nodes["usr/"+d]
		if !has && d != "bin" && d != "sbin" && d != "lib" {
			continue
		}
		if !has {
			lb.nodes["usr/"+d] = &node{path: "usr/" + d, typ: tar.TypeDir, mode: 0o755}
		}
		lb.nodes[d] = &node{path: d, typ: tar.TypeSymlink, mode: 0o777, link: "usr/" + d}
	}
}

// write adds the missing parent directories, makes the first of each set of hard
// links (in path order) the one that holds the content, and writes the tar.
func (lb *layerBuilder) write(w io.Writer) error {
	for p := range lb.nodes {
		for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
			if _, ok := lb.nodes[dir]; ok {
				break
			}
			lb.nodes[dir] = &node{path: dir, typ: tar.TypeDir, mode: 0o755}
		}
	}
	// A hard link's target must come before it in the archive: of each group of
	// paths that share content, the first by path holds it.
	groups := map[string][]string{}
	for p, n := range lb.nodes {
		if n.typ != tar.TypeLink {
			continue
		}
		t, ok := lb.nodes[n.link]
		if !ok || t.typ != tar.TypeReg {
			return fmt.Errorf("%s is a hard link to %s, which the layer has no file at", p, n.link)
		}
		groups[n.link] = append(groups[n.link], p)
	}
	for target, links := range groups {
		all := append(links, target)
		slices.Sort(all)
		first := all[0]
		if first != target {
			t := lb.nodes[target]
			holder := *t
			holder.path = first
			lb.nodes[first] = &holder
			lb.nodes[target] = &node{path: target, typ: tar.TypeLink, mode: t.mode, uid: t.uid, gid: t.gid}
		}
		for _, p := range all[1:] {
			lb.nodes[p].link = first
		}
	}
	tw := tar.NewWriter(w)
	for _, p := range slices.Sorted(maps.Keys(lb.nodes)) {
		n := lb.nodes[p]
		name := p
		if n.typ == tar.TypeDir {
			name += "/"
		}
		h := &tar.Header{
			Typeflag: n.typ, Name: name, Linkname: n.link, Mode: n.mode,
			Uid: n.uid, Gid: n.gid, ModTime: lb.opts.ModTime, Format: tar.FormatPAX,
		}
		if n.typ == tar.TypeReg {
			h.Size = n.size
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
		if n.typ != tar.TypeReg {
			continue
		}
		var r io.Reader = bytes.NewReader(n.data)
		if n.data == nil {
			r = io.NewSectionReader(lb.spool, n.off, n.size)
		}
		if _, err := io.Copy(tw, r); err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
	}
	return tw.Close()
}

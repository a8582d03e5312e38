package spec

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
)

// readmeSections are the README's sections whose HCL snippets are whole specs but for
// the image blocks they refer to.
var readmeSections = []string{"## Front doors: routes and TLS", "## Run kiln on a server"}

// TestREADMESnippets parses the HCL snippets of readmeSections, with an image block
// from scratch for each image.NAME they name: the README shows what validation takes.
func TestREADMESnippets(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	fence := regexp.MustCompile("(?ms)^( *)```hcl\n(.*?)^ *```$")
	images := regexp.MustCompile(`image\.([a-z][a-z0-9_-]*)`)
	n := 0
	for _, heading := range readmeSections {
		_, section, ok := strings.Cut(string(readme), "\n"+heading+"\n")
		if !ok {
			t.Fatalf("README.md has no section %q", heading)
		}
		if end := strings.Index(section, "\n## "); end >= 0 {
			section = section[:end]
		}
		for _, m := range fence.FindAllStringSubmatch(section, -1) {
			n++
			indent, body := m[1], m[2]
			var lines []string
			for _, l := range strings.Split(body, "\n") {
				lines = append(lines, strings.TrimPrefix(l, indent))
			}
			src := strings.Join(lines, "\n")
			seen := map[string]bool{}
			for _, im := range images.FindAllStringSubmatch(src, -1) {
				if !seen[im[1]] {
					seen[im[1]] = true
					src += fmt.Sprintf("\nimage %q {\n  from = \"scratch\"\n}\n", im[1])
				}
			}
			if _, diags := Parse("/srv/app/kiln.hcl", []byte(src), testOpts); diags.HasErrors() {
				t.Errorf("a snippet of %q does not parse: %v\n%s", heading, diags, src)
			}
		}
	}
	if n < 3 {
		t.Fatalf("found %d HCL snippets in %v, want the README's 3 or more", n, readmeSections)
	}
}

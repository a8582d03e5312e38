package plan

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// WriteText renders the plan as `kiln plan` prints it, in the manner of terraform plan:
// "+" create, "+/-" replace (a new server, then the old one goes), "-" destroy, and a
// summary.
func WriteText(w io.Writer, p Plan) error {
	if !p.HasChanges() {
		_, err := fmt.Fprintln(w, "No changes. The servers match the spec.")
		return err
	}
	var b strings.Builder
	b.WriteString("kiln will perform the following actions:\n")
	for _, s := range p.Services {
		if len(s.Changes) == 0 && len(s.Settings) == 0 {
			continue
		}
		b.WriteString("\n")
		for _, c := range s.Settings {
			fmt.Fprintf(&b, "  ~ service %q: %s\n", s.Service, c)
		}
		if len(s.Changes) == 0 {
			continue
		}
		if s.Spec == nil {
			fmt.Fprintf(&b, "  # service %q will be removed\n", s.Service)
		} else {
			fmt.Fprintf(&b, "  # service %q: revision %d, %s of image %s (%d unchanged)\n",
				s.Service, s.Revision, plural(s.Replicas, "replica"), shortDigest(s.Spec.Image), len(s.Keep))
		}
		if s.Rollout != "" && s.Spec != nil && s.Count(Replace)+s.Count(Destroy) > 0 {
			fmt.Fprintf(&b, "      rolled out as %s\n", s.Rollout)
		}
		for _, p := range s.Packages {
			fmt.Fprintf(&b, "      package %s\n", p)
		}
		for _, c := range s.Changes {
			switch c.Action {
			case Create:
				b.WriteString("  +   new server\n")
			case Replace:
				fmt.Fprintf(&b, "  +/- server %s (%s)\n", c.Old.Name, strings.Join(c.Reasons, "; "))
			case Destroy:
				fmt.Fprintf(&b, "  -   server %s (%s)\n", c.Old.Name, strings.Join(c.Reasons, "; "))
			}
		}
	}
	settings := ""
	if n := p.CountSettings(); n > 0 {
		settings = fmt.Sprintf(", %s to change", plural(n, "setting"))
	}
	fmt.Fprintf(&b, "\nPlan: %d to create, %d to replace, %d to destroy%s. Servers are never changed in place.\n",
		p.Count(Create), p.Count(Replace), p.Count(Destroy), settings)
	_, err := io.WriteString(w, b.String())
	return err
}

// JSONPlan is the machine-readable plan of `kiln plan -json`.
type JSONPlan struct {
	FormatVersion string        `json:"format_version"`
	Changes       bool          `json:"changes"`
	Summary       JSONSummary   `json:"summary"`
	Services      []JSONService `json:"services"`
}

type JSONSummary struct {
	Create  int `json:"create"`
	Replace int `json:"replace"`
	Destroy int `json:"destroy"`
	// Settings counts the service settings that change.
	Settings int `json:"settings"`
}

type JSONService struct {
	Service   string       `json:"service"`
	Revision  int64        `json:"revision,omitempty"`
	Image     string       `json:"image,omitempty"`
	SpecHash  string       `json:"spec_hash,omitempty"`
	Replicas  int          `json:"replicas"`
	Unchanged []string     `json:"unchanged"`
	Changes   []JSONChange `json:"changes"`
	Settings  []string     `json:"settings,omitempty"`
	// Packages are the OS package changes of the new image (see Service.Packages).
	Packages []string `json:"packages,omitempty"`
}

type JSONChange struct {
	Action     Action   `json:"action"`
	ServerID   string   `json:"server_id,omitempty"`
	ServerName string   `json:"server_name,omitempty"`
	Reasons    []string `json:"reasons,omitempty"`
}

// ToJSON converts the plan.
func ToJSON(p Plan) JSONPlan {
	out := JSONPlan{FormatVersion: "1.0", Changes: p.HasChanges(), Services: []JSONService{},
		Summary: JSONSummary{Create: p.Count(Create), Replace: p.Count(Replace), Destroy: p.Count(Destroy), Settings: p.CountSettings()}}
	for _, s := range p.Services {
		js := JSONService{Service: s.Service, Revision: s.Revision, Replicas: s.Replicas, Unchanged: []string{}, Changes: []JSONChange{}, Settings: s.Settings, Packages: s.Packages}
		if s.Spec != nil {
			js.Image, js.SpecHash = s.Spec.Image, s.Spec.Hash()
		}
		for _, k := range s.Keep {
			js.Unchanged = append(js.Unchanged, string(k.ID))
		}
		for _, c := range s.Changes {
			jc := JSONChange{Action: c.Action, Reasons: c.Reasons}
			if c.Old != nil {
				jc.ServerID, jc.ServerName = string(c.Old.ID), c.Old.Name
			}
			js.Changes = append(js.Changes, jc)
		}
		out.Services = append(out.Services, js)
	}
	return out
}

// WriteJSON writes the plan as indented JSON.
func WriteJSON(w io.Writer, p Plan) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(ToJSON(p))
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

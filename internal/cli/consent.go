package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/server"
)

// heldRollback is a service whose current revision a rollback made, which applying the
// spec would replace.
type heldRollback struct {
	Service  string
	Current  int64     // the revision the rollback recorded
	To       int64     // the revision it went back to
	By       string    // who rolled back
	At       time.Time // when
	Replaced int64     // the revision applying the spec would record
}

// heldRollbacks returns the services of services whose current revision was made by a
// rollback (as its history says: api.Revision.Rollback) and which the spec would
// change: applying it would silently undo the rollback. A service the daemon does not
// know yet has no history and is skipped.
func heldRollbacks(ctx context.Context, c *api.Client, services []api.Service, secrets []api.SecretSource) ([]heldRollback, error) {
	var held []heldRollback
	var planned []api.Service
	for _, svc := range services {
		revs, err := c.History(ctx, svc.Name)
		var se *api.StatusError
		if errors.As(err, &se) && se.Code == http.StatusNotFound {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s's history: %w", svc.Name, err)
		}
		i := slices.IndexFunc(revs, func(r api.Revision) bool { return r.Current })
		if i < 0 || revs[i].Rollback == nil {
			continue
		}
		rb := revs[i].Rollback
		held = append(held, heldRollback{Service: svc.Name, Current: revs[i].Number, To: rb.To, By: rb.By, At: revs[i].Created})
		planned = append(planned, svc)
	}
	if len(held) == 0 {
		return nil, nil
	}
	// The plan says which of them the spec changes: those it gives a new revision.
	raw, err := c.Plan(ctx, api.PlanRequest{Services: planned, Secrets: secrets})
	if err != nil {
		return nil, err
	}
	var resp server.PlanResponse
	if err := json.Unmarshal(raw, &resp); err != nil {
		return nil, fmt.Errorf("reading the plan: %w", err)
	}
	var out []heldRollback
	for _, h := range held {
		for _, s := range resp.Plan.Services {
			if s.Service == h.Service && s.Revision != h.Current {
				h.Replaced = s.Revision
				out = append(out, h)
			}
		}
	}
	return out, nil
}

// consentOptions are the flags with which a user answers for held rollbacks.
type consentOptions struct {
	AutoApprove  bool // apply the spec over them
	KeepRollback bool // leave those services out of this apply
}

// addConsentFlags registers -auto-approve and -keep-rollback.
func addConsentFlags(o *consentOptions, fs *pflag.FlagSet) {
	fs.BoolVar(&o.AutoApprove, "auto-approve", false, "apply the spec even over a service's rollback (made by kiln rollback) that it would replace")
	fs.BoolVar(&o.KeepRollback, "keep-rollback", false, "leave services whose current revision is a rollback as they are; apply the spec to the others")
}

// consent decides what to do about rollbacks the spec would undo, the way Terraform
// asks before it changes anything: with -auto-approve it applies; with -keep-rollback
// it leaves those services out; on a terminal it asks, and only "yes" applies;
// otherwise it refuses, with what to run. It returns the services to apply.
func (g *globals) consent(ctx context.Context, c *api.Client, services []api.Service, secrets []api.SecretSource, o consentOptions) ([]api.Service, error) {
	if o.AutoApprove && o.KeepRollback {
		return nil, errors.New("-auto-approve and -keep-rollback contradict each other: give one")
	}
	if o.AutoApprove {
		return services, nil
	}
	held, err := heldRollbacks(ctx, c, services, secrets)
	if err != nil || len(held) == 0 {
		return services, err
	}
	if o.KeepRollback {
		var kept []api.Service
		for _, s := range services {
			if slices.ContainsFunc(held, func(h heldRollback) bool { return h.Service == s.Name }) {
				fmt.Fprintf(g.stderr, "%s: kept at revision %d (a rollback); the spec's changes to it are not applied (-keep-rollback)\n", s.Name, revisionOf(held, s.Name))
				continue
			}
			kept = append(kept, s)
		}
		return kept, nil
	}
	writeHeld(g.stderr, held)
	if isTerminal(g.stderr) && isTerminalReader(g.stdin) {
		fmt.Fprint(g.stderr, "\nDo you want to apply the spec anyway?\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: ")
		answer, _ := bufio.NewReader(g.stdin).ReadString('\n')
		if strings.TrimSpace(answer) == "yes" {
			return services, nil
		}
		fmt.Fprintln(g.stderr, "\nApply cancelled: nothing was changed.")
		return nil, exitError{1}
	}
	fmt.Fprintf(g.stderr, "Nothing was changed. Run with -auto-approve to apply the spec anyway, or with -keep-rollback to apply it to the other services only.\n")
	return nil, exitError{1}
}

// writeHeld says, for each held rollback, what applying the spec would undo.
func writeHeld(w io.Writer, held []heldRollback) {
	for _, h := range held {
		fmt.Fprintf(w, "service %s is at revision %d, a rollback to revision %d made by %s at %s (%s); applying the spec replaces it with revision %d.\n",
			h.Service, h.Current, h.To, h.By, h.At.Local().Format("2006-01-02 15:04:05"), since(h.At), h.Replaced)
	}
}

func revisionOf(held []heldRollback, service string) int64 {
	for _, h := range held {
		if h.Service == service {
			return h.Current
		}
	}
	return 0
}

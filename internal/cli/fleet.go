package cli

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/internal/api"
)

func newStatusCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "status",
		Short:   "Show every service: revision, image, healthy servers, front door",
		Example: "  kiln status\n  kiln status -json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			st, err := c.Status(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			if len(st.Services) == 0 {
				fmt.Fprintln(g.stdout, "No services. Deploy the spec with `kiln apply`.")
				return nil
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "SERVICE\tREVISION\tIMAGE\tHEALTHY\tSTATE\tURL\tROLLOUT")
			for _, s := range st.Services {
				rollout := s.Rollout
				if rollout == "" {
					rollout = "-"
				}
				fmt.Fprintf(tw, "%s\t%d\t%s@%s\t%d/%d\t%s\t%s\t%s\n", s.Name, s.Revision, s.ImageName, short(s.Image), s.Healthy, s.Replicas, s.State, s.URL, rollout)
			}
			tw.Flush()
			for _, s := range st.Services {
				if s.Drift != "" {
					fmt.Fprintf(g.stdout, "%s: last drift found: %s\n", s.Name, s.Drift)
				}
				if s.Canary != nil {
					writeCanary(g.stdout, s.Name, *s.Canary)
				}
			}
			fmt.Fprintln(g.stdout)
			tw = tabwriter.NewWriter(g.stdout, 0, 4, 3, ' ', 0)
			nodes := false // a runtime of several machines: say which runs each server
			for _, s := range st.Services {
				for _, sv := range s.Servers {
					nodes = nodes || sv.Node != ""
				}
			}
			if nodes {
				fmt.Fprintln(tw, "SERVER\tSERVICE\tREVISION\tSTATE\tIN SERVICE\tADDRESS\tNODE\tCREATED")
			} else {
				fmt.Fprintln(tw, "SERVER\tSERVICE\tREVISION\tSTATE\tIN SERVICE\tADDRESS\tCREATED")
			}
			for _, s := range st.Services {
				for _, sv := range s.Servers {
					in := "no"
					switch {
					case sv.Canary:
						in = "canary"
					case sv.InService:
						in = "yes"
					}
					addr := sv.Address
					if nodes {
						addr += "\t" + cmp.Or(sv.Node, "-")
					}
					fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", sv.Name, s.Name, sv.Revision, sv.State, in, addr, since(sv.Created))
				}
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

func newHistoryCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "history SERVICE",
		Short:   "List a service's revisions and how each rollout ended",
		Example: "  kiln history web\n  kiln history web -json",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			h, err := c.History(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(h)
			}
			return writeHistory(g.stdout, h, time.Now())
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

func newRollbackCmd(g *globals) *cobra.Command {
	var to int64
	var detach bool
	cmd := &cobra.Command{
		Use:   "rollback SERVICE",
		Short: "Roll a service back to an earlier revision",
		Long: `Rollback records a new revision with the settings and image of an earlier one (by
default the last deployed revision before the current one) and rolls it out like apply.
Images of kept revisions are never pruned, so the image is still there.`,
		Example: "  kiln rollback web\n  kiln rollback web --to 3",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			res, err := c.Rollback(cmd.Context(), args[0], api.RollbackRequest{To: to, User: currentUser(), Detach: detach},
				func(e api.Event) { printEvent(g.stderr, e) })
			if err != nil {
				return err
			}
			if printResult(g.stdout, res) != nil {
				return exitError{1}
			}
			return nil
		},
	}
	cmd.Flags().Int64Var(&to, "to", 0, "the `REVISION` to go back to (default: the previous deployed one)")
	cmd.Flags().BoolVar(&detach, "detach", false, "return without waiting for the rollout")
	return cmd
}

func newDestroyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "destroy SERVICE",
		Short:   "Remove a service: drain and destroy its servers, close its front door",
		Example: "  kiln destroy web",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			res, err := c.Destroy(cmd.Context(), args[0], func(e api.Event) { printEvent(g.stderr, e) })
			if err != nil {
				return err
			}
			if printResult(g.stdout, res) != nil {
				return exitError{1}
			}
			return nil
		},
	}
}

func newEventsCmd(g *globals) *cobra.Command {
	var follow, asJSON bool
	var service string
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Show what happened: revisions, rollouts, heals, drift, servers created and destroyed",
		Example: `  kiln events
  kiln events -f --service web     # follow, as they happen
  kiln events -json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			enc := json.NewEncoder(g.stdout)
			print := func(e api.Event) {
				if asJSON {
					enc.Encode(e)
					return
				}
				fmt.Fprintf(g.stdout, "%s  %-10s %-10s %s\n", e.Time.Local().Format("2006-01-02 15:04:05"), e.Service, e.Type, e.Message)
			}
			if follow {
				return c.StreamEvents(cmd.Context(), service, 0, print)
			}
			evs, err := c.Events(cmd.Context(), service, 0)
			if err != nil {
				return err
			}
			for _, e := range evs {
				print(e)
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new events as they happen")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per event")
	cmd.Flags().StringVar(&service, "service", "", "only this `SERVICE`'s events")
	return cmd
}

func newLogsCmd(g *globals) *cobra.Command {
	var follow bool
	cmd := &cobra.Command{
		Use:     "logs SERVICE",
		Short:   "Show what a service's servers print",
		Example: "  kiln logs web\n  kiln logs web -f",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			return c.Logs(cmd.Context(), args[0], follow, g.stdout)
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new output")
	return cmd
}

// writeHistory prints revisions as a table. A detail of several lines (a failure with
// the server's last log lines) goes on in the DETAIL column, one line a row, so every
// column stays aligned; now is when the ages are counted from.
func writeHistory(w io.Writer, revs []api.Revision, now time.Time) error {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "REVISION\tIMAGE\tOUTCOME\tAPPLIED\tBY\tCOMMIT\tDETAIL")
	for _, r := range revs {
		num := strconv.FormatInt(r.Number, 10)
		if r.Current {
			num += " *"
		}
		commit := r.Commit
		if len(commit) > 12 {
			commit = commit[:12]
		}
		if commit == "" {
			commit = "-"
		}
		lines := detailLines(r.Detail)
		fmt.Fprintf(tw, "%s\t%s@%s\t%s\t%s\t%s\t%s\t%s\n", num, r.ImageName, short(r.Image), r.Outcome, ago(now.Sub(r.Created), r.Created),
			cell(r.AppliedBy), commit, lines[0])
		for _, l := range lines[1:] {
			fmt.Fprintf(tw, "\t\t\t\t\t\t  %s\n", l)
		}
	}
	tw.Flush()
	// The padding of the COMMIT column trails rows without a detail.
	for _, l := range strings.SplitAfter(b.String(), "\n") {
		if _, err := io.WriteString(w, strings.TrimRight(l, " \n")+strings.Repeat("\n", strings.Count(l, "\n"))); err != nil {
			return err
		}
	}
	return nil
}

// detailLines splits a detail into the lines it shows, at least one: tabs (which would
// split cells) become spaces, and blank lines and trailing space go.
func detailLines(detail string) []string {
	var out []string
	for _, l := range strings.Split(strings.ReplaceAll(detail, "\r", ""), "\n") {
		if l = strings.TrimRight(strings.ReplaceAll(l, "\t", "    "), " "); strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		return []string{""}
	}
	return out
}

// cell keeps a value on one line and in one cell of a table.
func cell(s string) string {
	return strings.NewReplacer("\t", " ", "\n", " ", "\r", "").Replace(s)
}

// writeCanary prints a service's canary: its step and share, both sides' figures over
// the step so far, and the last judgement (or how it ended).
func writeCanary(w io.Writer, service string, c api.CanaryStatus) {
	switch c.Outcome {
	case "":
		step := fmt.Sprintf("%s so far", time.Since(c.StepStarted).Round(time.Second))
		if c.StepDuration > 0 {
			step = fmt.Sprintf("%s of %s", time.Since(c.StepStarted).Round(time.Second), c.StepDuration)
		}
		if c.Pause {
			step += ", paused until kiln promote " + service
		}
		servers := "servers"
		if c.Servers == 1 {
			servers = "server"
		}
		fmt.Fprintf(w, "%s: canary of revision %d (stable: %d) at step %d of %d, %g%% of the requests on %d %s, %s\n",
			service, c.Revision, c.From, c.Step, c.Steps, c.Weight, c.Servers, servers, step)
	default:
		fmt.Fprintf(w, "%s: the canary of revision %d was %s at step %d of %d\n", service, c.Revision, c.Outcome, c.Step, c.Steps)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tREQUESTS\tERRORS\tP50\tP99\t")
	for _, side := range []struct {
		name string
		f    api.CanaryFigures
	}{{"canary", c.Canary}, {"stable", c.Stable}} {
		fmt.Fprintf(tw, "  %s\t%d\t%.2f%%\t%s\t%s\t\n", side.name, side.f.Requests, 100*side.f.ErrorRatio, millis(side.f.P50), millis(side.f.P99))
	}
	tw.Flush()
	for _, m := range c.Metrics {
		if m.Error != "" {
			fmt.Fprintf(w, "  query %s: %s\n", m.Name, m.Error)
		} else {
			fmt.Fprintf(w, "  query %s = %g\n", m.Name, m.Value)
		}
	}
	fmt.Fprintf(w, "  decision: %s", c.Decision)
	if len(c.Why) > 0 {
		fmt.Fprintf(w, ": %s", strings.Join(c.Why, "; "))
	}
	fmt.Fprintln(w)
}

func millis(d time.Duration) string {
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}

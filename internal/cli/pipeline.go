package cli

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func newPipelineCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pipeline",
		Short: "Continuous delivery: pipelines and their runs",
		Long: `A pipeline block watches a git branch; every new commit is baked from a clean
checkout, tested on candidate servers away from the front door, and deployed (then
promoted), each run recorded with its stages and logs. kiln apply and kiln up record the
spec's pipelines; the daemon runs them.`,
		Example: `  kiln pipeline list
  kiln pipeline runs hello
  kiln pipeline show 12
  kiln pipeline trigger hello --commit 3f2a1c`,
	}
	cmd.AddCommand(&cobra.Command{
		Use: "list", Short: "List the pipelines the daemon runs", Example: "  kiln pipeline list", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ps, err := c.Pipelines(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "PIPELINE\tREPO\tBRANCH\tPOLL\tSERVICES\tPROMOTE")
			for _, p := range ps {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.Repo, p.Branch, p.Poll, strings.Join(p.Services, ","), strings.Join(p.Promote, ","))
			}
			return tw.Flush()
		},
	})
	var asJSON bool
	runs := &cobra.Command{
		Use: "runs [PIPELINE]", Short: "List the latest runs", Example: "  kiln pipeline runs\n  kiln pipeline runs hello -json", Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			rs, err := c.Runs(cmd.Context(), name)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rs)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "RUN\tPIPELINE\tCOMMIT\tSTATE\tTRIGGER\tQUEUED\tMESSAGE")
			for _, r := range rs {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Pipeline, r.Commit[:min(12, len(r.Commit))], r.State, r.Trigger, since(r.Created), r.Message)
			}
			return tw.Flush()
		},
	}
	runs.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	cmd.AddCommand(runs)
	cmd.AddCommand(&cobra.Command{
		Use: "show RUN", Short: "Show a run: its stages, their outcome and logs", Example: "  kiln pipeline show 12", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil {
				return fmt.Errorf("%q is not a run number (see kiln pipeline runs)", args[0])
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			r, err := c.Run(cmd.Context(), id)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "run %d of pipeline %s: %s\ncommit %s %s (by %s)\n", r.ID, r.Pipeline, r.State, r.Commit, r.Message, r.Trigger)
			if r.Detail != "" {
				fmt.Fprintf(g.stdout, "%s\n", r.Detail)
			}
			for _, s := range r.Stages {
				took := ""
				if !s.Finished.IsZero() {
					took = " in " + s.Finished.Sub(s.Started).Round(10e6).String()
				}
				fmt.Fprintf(g.stdout, "\n== %s: %s%s\n%s", s.Name, s.State, took, s.Log)
			}
			return nil
		},
	})
	var commit string
	trigger := &cobra.Command{
		Use: "trigger PIPELINE", Short: "Run a commit (the branch's head by default) now", Example: "  kiln pipeline trigger hello\n  kiln pipeline trigger hello --commit 3f2a1c", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			r, err := c.Trigger(cmd.Context(), args[0], commit)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "run %d of %s: %s (follow it with `kiln pipeline show %d`)\n", r.ID, r.Commit[:min(12, len(r.Commit))], r.State, r.ID)
			return nil
		},
	}
	trigger.Flags().StringVar(&commit, "commit", "", "the commit `SHA` to run (default: the branch's head)")
	cmd.AddCommand(trigger)
	return cmd
}

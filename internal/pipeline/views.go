package pipeline

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/gitsource"
	"github.com/kiln-build/kiln/internal/store"
)

// Trigger queues a run of commit (the branch's head when "") of the named pipeline,
// fetching its source first; trigger says by whom. The error is store.ErrNotFound for
// a pipeline that has no worker, store.ErrRunExists when the commit has a run.
func (m *Manager) Trigger(ctx context.Context, pipeline, commit, trigger string) (api.Run, error) {
	w := m.worker(pipeline)
	if w == nil {
		return api.Run{}, fmt.Errorf("pipeline %q: %w", pipeline, store.ErrNotFound)
	}
	r, err := m.queue(ctx, w, commit, trigger)
	return apiRun(r), redactErr(w.def, err)
}

// ErrBadSignature means a webhook call was not signed with the pipeline's secret.
var ErrBadSignature = errors.New("the webhook call is not signed with the pipeline's secret")

// Webhook handles a push notification: body signed with HMAC-SHA256 of the pipeline's
// webhook secret (header value "sha256=<hex>"), in the usual shape ({"ref":
// "refs/heads/main", "after": "<sha>"}). A push to another branch is ignored (false).
// An unknown pipeline is answered with ErrBadSignature, as a bad signature is.
func (m *Manager) Webhook(ctx context.Context, pipeline string, body []byte, signature string) (api.Run, bool, error) {
	w := m.worker(pipeline)
	if w == nil {
		// The same answer as a bad signature: an unsigned caller learns no pipeline names.
		return api.Run{}, false, ErrBadSignature
	}
	if w.def.WebhookSecret == "" {
		return api.Run{}, false, fmt.Errorf("%w: pipeline %q has no webhook_secret, so its webhook is off", ErrBadSignature, pipeline)
	}
	mac := hmac.New(sha256.New, []byte(w.def.WebhookSecret))
	mac.Write(body)
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(want), []byte(signature)) {
		return api.Run{}, false, ErrBadSignature
	}
	var push struct {
		Ref   string `json:"ref"`
		After string `json:"after"`
	}
	if err := json.Unmarshal(body, &push); err != nil {
		return api.Run{}, false, fmt.Errorf("malformed push payload: %w", err)
	}
	if push.Ref != "" && push.Ref != gitsource.BranchRef(w.def.Branch) {
		return api.Run{}, false, nil
	}
	run, err := m.queue(ctx, w, push.After, "webhook")
	return apiRun(run), true, redactErr(w.def, err)
}

// Pipelines returns the recorded pipelines as they may be shown: without their webhook
// secret, variables and secret sources, and with their repository's URL redacted.
func (m *Manager) Pipelines(ctx context.Context) ([]api.Pipeline, error) {
	defs, err := m.definitions(ctx)
	if err != nil {
		return nil, err
	}
	out := []api.Pipeline{}
	for _, p := range defs {
		p.Webhook, p.WebhookSecret = p.WebhookSecret != "", ""
		p.Vars, p.Secrets, p.Sensitive = nil, nil, nil
		p.Repo = redactURL(p.Repo)
		out = append(out, p)
	}
	return out, nil
}

// Runs returns the latest runs of pipeline (all when "").
func (m *Manager) Runs(ctx context.Context, pipeline string) ([]api.Run, error) {
	runs, err := m.opts.State.Runs(ctx, pipeline, 100)
	out := []api.Run{}
	for _, r := range runs {
		out = append(out, apiRun(r))
	}
	return out, err
}

// Run returns one run with its stages and their logs; store.ErrNotFound if there is no
// such run.
func (m *Manager) Run(ctx context.Context, id int64) (api.Run, error) {
	r, err := m.opts.State.Run(ctx, id)
	return apiRun(r), err
}

// RunStages returns a run's stages without their logs.
func (m *Manager) RunStages(ctx context.Context, id int64) ([]api.Stage, error) {
	sts, err := m.opts.State.RunStages(ctx, id)
	return apiRun(store.Run{Stages: sts}).Stages, err
}

// apiRun is a run as the API shows it.
func apiRun(r store.Run) api.Run {
	out := api.Run{ID: r.ID, Pipeline: r.Pipeline, Commit: r.Commit, Message: r.Message, Trigger: r.Trigger,
		State: string(r.State), Detail: r.Detail, Created: r.Created, Started: r.Started, Finished: r.Finished}
	for _, st := range r.Stages {
		out.Stages = append(out.Stages, api.Stage{Name: st.Name, State: string(st.State), Log: st.Log, Started: st.Started, Finished: st.Finished})
	}
	return out
}

// redactURL is a repository URL as kiln shows it: without the password or token that
// may be in it.
func redactURL(repo string) string {
	u, err := url.Parse(repo)
	if err != nil || u.User == nil {
		return repo
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "redacted")
	} else {
		u.User = url.User("redacted")
	}
	return u.String()
}

// redactErr is err with the repository's URL shown without its credentials; err
// itself (errors.Is still matches it) when it does not show the URL.
func redactErr(def api.Pipeline, err error) error {
	if err == nil || redactURL(def.Repo) == def.Repo || !strings.Contains(err.Error(), def.Repo) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), def.Repo, redactURL(def.Repo)))
}

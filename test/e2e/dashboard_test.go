package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromium finds Debian's chromium (scripts/test installs it).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	skipShort(t, "no chromium for the browser tests: install Debian's chromium (scripts/test does: apt-get install chromium)")
	return ""
}

// screenshots is where the browser tests save a picture of each page:
// $KILN_SCREENSHOTS, else a directory under the system's temporary directory.
func screenshots(t *testing.T) string {
	dir := os.Getenv("KILN_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "kiln-screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browse starts a headless Chromium with its own profile and returns a tab's context.
func browse(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, // the tests may run as root, where Chromium's sandbox cannot
		chromedp.WindowSize(1400, 1000),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// do runs browser steps with a deadline, failing the test with what was being done.
func do(t *testing.T, ctx context.Context, what string, timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	get(t, ctx, what, timeout, chromedp.Steps(steps...))
}

// get runs a browser action that returns a value.
func get[T any](t *testing.T, ctx context.Context, what string, timeout time.Duration, a chromedp.Action[T]) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	v, err := chromedp.Run(tctx, a)
	if err != nil {
		html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("main")))
		t.Fatalf("%s: %v\npage:\n%s", what, err, html)
	}
	return v
}

func shoot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png := get(t, ctx, "screenshot of "+name, 20*time.Second, chromedp.FullScreenshot(100))
	path := filepath.Join(screenshots(t), name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

func readState(t *testing.T, dir, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, ".kiln", file))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// signIn opens the dashboard's sign-in page and signs in with token.
func signIn(t *testing.T, ctx context.Context, api, token string) {
	t.Helper()
	do(t, ctx, "sign in", 30*time.Second,
		chromedp.Navigate(api+"/login"),
		chromedp.WaitVisible(chromedp.ID("#token")),
		chromedp.SendKeys(chromedp.ID("#token"), token),
		chromedp.Submit(chromedp.ID("#token")),
		chromedp.WaitVisible(chromedp.ID("#services")),
	)
}

// TestDashboard drives the dashboard in a real headless Chromium against `kiln up` on
// the real engine: the fleet lists the service; a rollout from the CLI is seen live, a
// docker kill appears as events and a replacement, all without reloading; a rollback
// clicked in the page happens; a POST without the CSRF token and a read-only session's
// rollback are refused. It saves a screenshot of each page.
func TestDashboard(t *testing.T) {
	d := newDeployment(t)
	d.startDaemon("revision 1 deployed", "up")
	api := readState(t, d.dir, "api.addr")
	ctx := browse(t)

	// The sign-in page, then the fleet.
	do(t, ctx, "open the sign-in page", 30*time.Second, chromedp.Navigate(api+"/"), chromedp.WaitVisible(chromedp.ID("#token")))
	shoot(t, ctx, "login")
	signIn(t, ctx, api, readState(t, d.dir, "token"))
	row := `tr[data-service="` + d.service + `"]`
	do(t, ctx, "the fleet lists the service", 30*time.Second,
		chromedp.WaitVisible(chromedp.CSS(row)),
		chromedp.WaitVisible(chromedp.CSS("#live.on")),
	)
	health := get(t, ctx, "read the health", 10*time.Second, chromedp.Text(chromedp.CSS(row+" .health")))
	if health != "2/2" {
		t.Errorf("fleet shows %q healthy, want 2/2", health)
	}
	shoot(t, ctx, "fleet")
	checkAccessible(t, ctx, "fleet")
	// What the browser measured of the page: the server's render time and the bytes.
	perf := get(t, ctx, "read the navigation timing", 10*time.Second, chromedp.Evaluate[map[string]float64](`(() => {
		const n = performance.getEntriesByType("navigation")[0];
		const st = (n.serverTiming || []).find(s => s.name === "render");
		return {render: st ? st.duration : -1, transfer: n.transferSize, decoded: n.decodedBodySize, total: n.duration};
	})()`))
	t.Logf("fleet page in Chromium: render %.2f ms on the server, %.0f bytes transferred (%.0f of HTML), %.0f ms to load",
		perf["render"], perf["transfer"], perf["decoded"], perf["total"])
	if perf["render"] < 0 {
		t.Errorf("the fleet page has no Server-Timing render entry")
	}

	// A rollout started from the CLI, watched on the service page without a reload.
	do(t, ctx, "open the service page", 30*time.Second,
		chromedp.Navigate(api+"/services/"+d.service),
		chromedp.WaitVisible(chromedp.CSS("#live.on")),
		mark,
	)
	editSpec(t, d.dir, "Hello from kiln!", "Hello from the dashboard test!")
	applied := make(chan error, 1)
	go func() {
		cmd := exec.Command(kiln, "apply")
		cmd.Dir, cmd.Env = d.dir, append(os.Environ(), d.env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			err = fmt.Errorf("%w\n%s", err, out)
		}
		applied <- err
	}()
	do(t, ctx, "the rollout shows up running, with a server created", 60*time.Second,
		chromedp.WaitVisible(chromedp.CSS(`#rollout[data-state="running"] li[data-type="created"]`)))
	shoot(t, ctx, "service-rollout")
	do(t, ctx, "the rollout ends, live", 90*time.Second,
		chromedp.WaitVisible(chromedp.CSS(`#rollout[data-state="succeeded"] li[data-type="deployed"]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-revision="2"] .badge.ok`)))
	if err := <-applied; err != nil {
		t.Fatalf("kiln apply: %v", err)
	}
	notReloaded(t, ctx, "the rollout")
	shoot(t, ctx, "service")
	checkAccessible(t, ctx, "service")

	// docker kill: an event and a replacement, on the events page, without a reload.
	do(t, ctx, "open the events page", 30*time.Second,
		chromedp.Navigate(api+"/events?service="+d.service),
		chromedp.WaitVisible(chromedp.CSS("#live.on")),
		mark,
	)
	newest := get(t, ctx, "read the newest event", 10*time.Second, chromedp.AttributeValue(chromedp.CSS(`#events tbody tr`), "data-id")).Value
	victim := d.running()[0]
	sh(t, "/", nil, "docker", "kill", victim)
	do(t, ctx, "the kill and the replacement appear", 60*time.Second,
		chromedp.WaitVisible(chromedp.CSS(`#events tr[data-type="heal"]`)),
		chromedp.Poll[chromedp.Void](`document.querySelector('#events tbody tr[data-type="admitted"]') !== null &&
			Number(document.querySelector('#events tbody tr[data-type="admitted"]').dataset.id) > `+newest, chromedp.WithPollingTimeout(60*time.Second)),
	)
	notReloaded(t, ctx, "the heal")
	shoot(t, ctx, "events")
	checkAccessible(t, ctx, "events")

	// An exec into a server: the drift found shows on the service page, with the command.
	do(t, ctx, "open the service page again", 30*time.Second,
		chromedp.Navigate(api+"/services/"+d.service),
		chromedp.WaitVisible(chromedp.CSS("#live.on")))
	exec.Command("docker", "exec", d.running()[0], "/app/hello").Run() // exits at once: port in use
	do(t, ctx, "the drift appears", 60*time.Second, chromedp.WaitVisible(chromedp.CSS("#drift")))
	if drift := get(t, ctx, "read the drift", 10*time.Second, chromedp.Text(chromedp.CSS("#drift"))); !strings.Contains(drift, "/app/hello") {
		t.Errorf("the drift found does not name the command: %q", drift)
	}
	shoot(t, ctx, "service-drift")
	eventually(t, 30*time.Second, "the drifted server replaced", d.healthy)

	// A rollback clicked in the page: confirmed, done, in the history.
	do(t, ctx, "roll back from the page", 90*time.Second,
		chromedp.Navigate(api+"/services/"+d.service),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-revision="1"] a.button`)),
		chromedp.Click(chromedp.CSS(`tr[data-revision="1"] a.button`)),
		chromedp.WaitVisible(chromedp.ID("#confirm")),
	)
	shoot(t, ctx, "confirm-rollback")
	do(t, ctx, "confirm the rollback and see it done", 90*time.Second,
		chromedp.Click(chromedp.ID("#confirm")),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-revision="3"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#rollout[data-state="succeeded"] li[data-type="deployed"]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-revision="3"] .badge.ok`)),
	)
	by := get(t, ctx, "read the history", 10*time.Second, chromedp.Text(chromedp.CSS(`tr[data-revision="3"]`)))
	if !strings.Contains(by, "rollback to revision 1") || !strings.Contains(d.get("/"), "Hello from kiln!") {
		t.Errorf("revision 3 is %q; front door says %q", by, d.get("/"))
	}

	// A POST without the CSRF token is refused.
	post := `fetch(location.pathname + "/rollback", {method: "POST", body: new URLSearchParams(%s)}).then(r => r.status)`
	code := get(t, ctx, "post a rollback without the CSRF token", 20*time.Second,
		chromedp.Evaluate[int](strings.Replace(post, "%s", `{to: "2"}`, 1), chromedp.EvalAwaitPromise))
	if code != 403 {
		t.Errorf("a rollback without the CSRF token: %d, want 403", code)
	}

	// Other pages.
	do(t, ctx, "images", 30*time.Second, chromedp.Navigate(api+"/images"), chromedp.WaitVisible(chromedp.ID("#images")))
	shoot(t, ctx, "images")
	do(t, ctx, "an SBOM", 30*time.Second, chromedp.Click(chromedp.CSS(`#images tbody tr a[href$="/sbom"]`)), chromedp.WaitVisible(chromedp.ID("#components")))
	shoot(t, ctx, "sbom")
	do(t, ctx, "pipelines", 30*time.Second, chromedp.Navigate(api+"/pipelines"), chromedp.WaitVisible(chromedp.CSS("h1")))
	shoot(t, ctx, "pipelines")

	// A read-only session sees the service and cannot roll back, even with its own
	// CSRF token.
	do(t, ctx, "sign out", 30*time.Second, chromedp.Navigate(api+"/"), chromedp.Click(chromedp.CSS(`header form button`)), chromedp.WaitVisible(chromedp.ID("#token")))
	signIn(t, ctx, api, readState(t, d.dir, "token.readonly"))
	do(t, ctx, "the read-only service page", 30*time.Second,
		chromedp.Navigate(api+"/services/"+d.service),
		chromedp.WaitVisible(chromedp.ID("#servers")),
	)
	buttons := get(t, ctx, "count the change buttons", 10*time.Second,
		chromedp.Evaluate[int](`document.querySelectorAll('a[href*="/rollback"], a[href$="/destroy"]').length`))
	code = get(t, ctx, "post a read-only rollback", 20*time.Second,
		chromedp.Evaluate[int](strings.Replace(post, "%s", `{to: "2", csrf: document.querySelector('input[name=csrf]').value}`, 1), chromedp.EvalAwaitPromise))
	if buttons != 0 {
		t.Errorf("a read-only session is shown %d change buttons", buttons)
	}
	if code != 403 {
		t.Errorf("a read-only session's rollback: %d, want 403", code)
	}
	shoot(t, ctx, "service-read-only")
	if h := d.kiln(nil, "history", d.service).stdout; strings.Contains(h, "\n4 ") {
		t.Errorf("a refused rollback made a revision:\n%s", h)
	}
}

// checkAccessible checks what a machine can of a page's accessibility: every form
// field has a label, every graphic a text alternative, every table a caption, and the
// first Tab from the top reaches the skip link to the content.
func checkAccessible(t *testing.T, ctx context.Context, page string) {
	t.Helper()
	problems := get(t, ctx, "check the accessibility of "+page, 20*time.Second, chromedp.Evaluate[[]string](`(() => {
		const out = [];
		for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
			if (!el.labels || el.labels.length === 0) out.push('unlabelled ' + el.outerHTML.slice(0, 80));
		}
		for (const el of document.querySelectorAll('svg, img, meter')) {
			if (!el.getAttribute('aria-label') && !el.getAttribute('alt') && !(el.labels && el.labels.length)) out.push('no text alternative: ' + el.outerHTML.slice(0, 80));
		}
		for (const el of document.querySelectorAll('table')) {
			if (!el.querySelector('caption')) out.push('table without a caption: ' + (el.id || '?'));
		}
		for (const el of document.querySelectorAll('a, button')) {
			if (!el.textContent.trim() && !el.getAttribute('aria-label')) out.push('unnamed control: ' + el.outerHTML.slice(0, 80));
		}
		// Text contrast (WCAG AA: 4.5:1) against the first opaque background behind it.
		const rgb = s => (s.match(/[\d.]+/g) || []).map(Number);
		const lum = c => { const [r, g, b] = c.slice(0, 3).map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
		const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
		const seen = new Set();
		for (let n = walker.nextNode(); n; n = walker.nextNode()) {
			const el = n.parentElement;
			if (!n.textContent.trim() || !el || seen.has(el) || el.closest('.sr-only, .skip, svg')) continue;
			seen.add(el);
			let bg = el, b = null;
			for (; bg; bg = bg.parentElement) { const c = rgb(getComputedStyle(bg).backgroundColor); if (c.length === 3 || c[3] > 0.9) { b = c; break; } }
			b = b || [255, 255, 255];
			const f = rgb(getComputedStyle(el).color);
			const [hi, lo] = [lum(f), lum(b)].sort((x, y) => y - x);
			const ratio = (hi + 0.05) / (lo + 0.05);
			if (ratio < 4.5) out.push('contrast ' + ratio.toFixed(2) + ':1 for "' + n.textContent.trim().slice(0, 30) + '"');
		}
		document.activeElement && document.activeElement.blur();
		return out;
	})()`))
	for _, p := range problems {
		t.Errorf("%s: %s", page, p)
	}
	do(t, ctx, "tab to the skip link on "+page, 10*time.Second, chromedp.KeyEvent("\t"))
	if got := get(t, ctx, "read the focus", 10*time.Second, chromedp.Evaluate[string](`document.activeElement ? document.activeElement.className : ""`)); got != "skip" {
		t.Errorf("%s: the first Tab focuses %q, want the skip link", page, got)
	}
}

// notReloaded checks that the marker set by mark is still there: the page showed what
// was asked without a reload.
func notReloaded(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	if marker := get(t, ctx, "read the marker", 10*time.Second, chromedp.Evaluate[string](`window.kilnMarker || ""`)); marker != "not reloaded" {
		t.Errorf("the page was reloaded to show %s", what)
	}
}

// mark sets a marker in the page's window: still there later, the page was not
// reloaded.
var mark = chromedp.Action[chromedp.Void](func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
	_, err := chromedp.Evaluate[chromedp.Void](`window.kilnMarker = "not reloaded"; undefined`)(ctx, t)
	if errors.Is(err, chromedp.ErrJSUndefined) {
		err = nil
	}
	return chromedp.Void{}, err
})

package simdriver

import (
	"fmt"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"path"
	"strings"
	"sync"
	"testing/fstest"
	"time"

	"github.com/kiln-build/kiln/internal/driver"
)

// version is what the simulated examples/hello reports, as a build without -X would.
const version = "dev"

// process is a simulated examples/hello: it reads PORT, GREETING_FILE, STATIC_DIR and
// EXIT_AFTER from its environment as that program does, serves GET / (the greeting,
// its version and host name), GET /healthz and GET /static/ on its port, exits 1 when
// PORT is not a port and 3 after EXIT_AFTER, and exits 0 when stopped. What it prints
// is its log, with one line per request answered ("GET /healthz 200"), so tests can
// see traffic reach a server.
type process struct {
	ln       net.Listener // the server's published address
	listenOn int          // the port the program listens on, 0 when PORT is not one
	port     int          // the spec's port, published at ln
	env      map[string]string
	handler  http.Handler
	onExit   func(driver.Exit)
	logs     *logbuf

	mu      sync.Mutex
	stopped bool
	http    *http.Server
	timer   *time.Timer
	done    chan struct{} // closed when the process has ended
	exit    driver.Exit   // set before done is closed
}

// start prepares the process of spec from img, named host, behind ln. It does nothing
// yet (run does) and never calls onExit, so it may be called with the driver's lock.
func start(img *image, spec driver.ServerSpec, host string, ln net.Listener, onExit func(driver.Exit)) *process {
	env := map[string]string{}
	for _, kv := range img.env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	maps.Copy(env, spec.Env)
	files := maps.Clone(img.files)
	for p, b := range spec.Files {
		files[strings.TrimPrefix(path.Clean(p), "/")] = &fstest.MapFile{Data: b, Mode: 0o444}
	}
	p := &process{ln: ln, port: spec.Port, env: env, onExit: onExit, logs: newLogbuf(), done: make(chan struct{})}
	if n, err := net.LookupPort("tcp", getenv(env, "PORT", "8080")); err == nil {
		p.listenOn = n
	}
	p.handler = p.mux(files, img.workdir, host)
	return p
}

func getenv(env map[string]string, k, def string) string {
	if v := env[k]; v != "" {
		return v
	}
	return def
}

// mux is examples/hello's handler, over the files the process sees.
func (p *process) mux(files fstest.MapFS, workdir, host string) http.Handler {
	abs := func(name string) string { return strings.TrimPrefix(path.Join(workdir, name), "/") }
	greeting := "Hello from kiln!"
	if f := files[abs(getenv(p.env, "GREETING_FILE", "/etc/hello/greeting.txt"))]; f != nil {
		greeting = strings.TrimSpace(string(f.Data))
	}
	var static fs.FS = files
	if dir := abs(getenv(p.env, "STATIC_DIR", "static")); dir != "" {
		static, _ = fs.Sub(files, dir)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s\nversion: %s\nserver: %s\n", greeting, version, host)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &status{ResponseWriter: w, code: http.StatusOK}
		mux.ServeHTTP(rec, r)
		p.logs.add(fmt.Sprintf("%s %s %d", r.Method, r.URL.Path, rec.code))
	})
}

type status struct {
	http.ResponseWriter
	code int
}

func (s *status) WriteHeader(code int) { s.code = code; s.ResponseWriter.WriteHeader(code) }

// slogLine is a line as the default log/slog logger prints it.
func slogLine(level, msg string, attrs ...string) string {
	return strings.Join(append([]string{time.Now().Format("2006/01/02 15:04:05"), level, msg}, attrs...), " ")
}

// run starts the program: it prints that it listens, then serves, or exits at once
// when its PORT is not a port. It is called without the driver's lock.
func (p *process) run() {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	addr := ":" + getenv(p.env, "PORT", "8080")
	p.logs.add(slogLine("INFO", "listening", "addr="+addr, "version="+version))
	if p.listenOn == 0 {
		p.mu.Unlock()
		p.logs.add(slogLine("ERROR", "serving", fmt.Sprintf("err=%q", "listen tcp: address tcp/"+strings.TrimPrefix(addr, ":")+": unknown port")))
		p.stop(driver.Exit{Code: 1})
		return
	}
	if d, err := time.ParseDuration(p.env["EXIT_AFTER"]); err == nil {
		p.timer = time.AfterFunc(d, func() {
			p.logs.add(slogLine("ERROR", "exiting, as EXIT_AFTER asks", "after="+d.String()))
			p.stop(driver.Exit{Code: 3})
		})
	}
	if p.listenOn == p.port {
		p.http = &http.Server{Handler: p.handler, ReadHeaderTimeout: 5 * time.Second}
		go p.http.Serve(p.ln)
	} else {
		// The program listens on a port that is not published: the published one takes
		// connections and drops them, as a runtime's port forward does.
		go func() {
			for {
				c, err := p.ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
	p.mu.Unlock()
}

// stop ends the process with x, once: it stops listening, ends its log and reports
// the exit. Later calls do nothing.
func (p *process) stop(x driver.Exit) {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	p.stopped = true
	if p.timer != nil {
		p.timer.Stop()
	}
	if p.http != nil {
		p.http.Close() // closes ln too
	}
	p.ln.Close()
	p.exit = x
	p.mu.Unlock()
	p.logs.end()
	// The exit is recorded (the server listed exited, the die event sent) before Wait
	// returns it: whoever waited and then lists sees the server exited.
	p.onExit(x)
	close(p.done)
}

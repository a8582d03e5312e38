/*
 * A small web service for kiln, in C with the C library only.
 *
 * GET / answers the greeting (the GREETING variable, else "Hello from C!"), the version
 * (VERSION) and the server's name; GET /healthz answers "ok"; anything else 404. It
 * listens on PORT (8080), answers each request on its connection and closes it. On
 * SIGTERM it stops accepting and exits once the request in hand is answered.
 */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile sig_atomic_t stopping;

static void on_term(int sig) {
	(void)sig;
	stopping = 1;
}

static const char *env(const char *name, const char *def) {
	const char *v = getenv(name);
	return v && *v ? v : def;
}

static void answer(int fd, int status, const char *reason, const char *body) {
	char head[256];
	int n = snprintf(head, sizeof head,
	                 "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
	                 "Content-Length: %zu\r\nConnection: close\r\n\r\n",
	                 status, reason, strlen(body));
	if (write(fd, head, (size_t)n) < 0 || write(fd, body, strlen(body)) < 0)
		perror("write");
}

static void serve(int fd, const char *page) {
	char req[2048];
	size_t got = 0;
	/* Read up to the end of the request's head. */
	while (got < sizeof req - 1) {
		ssize_t r = read(fd, req + got, sizeof req - 1 - got);
		if (r <= 0)
			return;
		got += (size_t)r;
		req[got] = '\0';
		if (strstr(req, "\r\n\r\n"))
			break;
	}
	if (strncmp(req, "GET / ", 6) == 0)
		answer(fd, 200, "OK", page);
	else if (strncmp(req, "GET /healthz ", 13) == 0)
		answer(fd, 200, "OK", "ok\n");
	else
		answer(fd, 404, "Not Found", "not found\n");
}

int main(void) {
	char host[256] = "unknown";
	gethostname(host, sizeof host - 1);
	static char page[1024];
	snprintf(page, sizeof page, "%s\nversion: %s\nserver: %s\n", env("GREETING", "Hello from C!"),
	         env("VERSION", "dev"), host);

	struct sigaction sa = {0};
	sa.sa_handler = on_term; /* no SA_RESTART: accept returns EINTR on SIGTERM */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	int port = atoi(env("PORT", "8080"));
	int ls = socket(AF_INET6, SOCK_STREAM, 0);
	int off = 0, on = 1;
	setsockopt(ls, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
	struct sockaddr_in6 addr = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port), .sin6_addr = in6addr_any};
	if (bind(ls, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(ls, 128) < 0) {
		perror("listen");
		return 1;
	}
	printf("listening on :%d, version %s\n", port, env("VERSION", "dev"));
	fflush(stdout);
	while (!stopping) {
		int fd = accept(ls, NULL, NULL);
		if (fd < 0) {
			if (errno == EINTR)
				continue;
			perror("accept");
			continue;
		}
		serve(fd, page);
		close(fd);
	}
	puts("SIGTERM: stopped");
	return 0;
}

// A small web service for kiln, on Node's standard library only.
//
// GET / answers the greeting (the GREETING variable, else the file GREETING_FILE names),
// the version and the server's name; GET /healthz answers "ok". It listens on PORT
// (8080). On SIGTERM it stops taking connections, finishes the requests in flight and
// exits: servers are replaced, never killed mid-request.
"use strict";

const fs = require("node:fs");
const http = require("node:http");
const os = require("node:os");

function loadGreeting() {
  if (process.env.GREETING) return process.env.GREETING.trim();
  try {
    return fs.readFileSync(process.env.GREETING_FILE || "/app/greeting.txt", "utf8").trim();
  } catch {
    return "Hello from Node!";
  }
}

const greeting = loadGreeting();
const version = process.env.VERSION || "dev";
const server = os.hostname();

const srv = http.createServer((req, res) => {
  let status = 200;
  let body;
  if (req.url === "/") {
    body = `${greeting}\nversion: ${version}\nserver: ${server}\n`;
  } else if (req.url === "/healthz") {
    body = "ok\n";
  } else {
    status = 404;
    body = "not found\n";
  }
  res.writeHead(status, {
    "Content-Type": "text/plain; charset=utf-8",
    "Content-Length": Buffer.byteLength(body),
  });
  res.end(body);
});
// Keep-alive, as the front door's connections are reused; longer than the door's idle
// timeout so the door, not the server, closes an idle connection.
srv.keepAliveTimeout = 65_000;

const port = Number(process.env.PORT || 8080);
srv.listen(port, () => console.log(`listening on :${port}, version ${version}`));

process.on("SIGTERM", () => {
  console.log("SIGTERM: finishing the requests in flight");
  srv.close(() => process.exit(0));
  srv.closeIdleConnections();
});

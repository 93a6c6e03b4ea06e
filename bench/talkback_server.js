// Serve talkback tapes for bench/replay_throughput.py: node talkback_server.js PORT TAPES_DIR
// Recording is disabled, so talkback answers from its tapes only, as baton replay does.
const path = require("path");
// Installed by replay_throughput.py into bench/.cache (npm package "talkback").
const talkback = require(path.join(__dirname, ".cache", "node_modules", "talkback"));

const server = talkback({
  host: "http://127.0.0.1:9",
  port: Number(process.argv[2]),
  path: process.argv[3],
  record: talkback.Options.RecordMode.DISABLED,
  fallbackMode: talkback.Options.FallbackMode.NOT_FOUND,
  allowHeaders: [],
  silent: true,
  summary: false,
});
server.start(() => console.log("talkback ready"));
process.on("SIGTERM", () => server.close(() => process.exit(0)));

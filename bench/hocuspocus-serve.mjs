// bench/compare starts this as the server `hocuspocus`: Hocuspocus 4.7 with its SQLite extension.
// PORT and DB (the database file) come from the environment; it listens on 127.0.0.1 only.
import { Server } from "@hocuspocus/server";
import { SQLite } from "@hocuspocus/extension-sqlite";
const server = new Server({
  port: Number(process.env.PORT ?? 1234),
  address: "127.0.0.1",
  quiet: true,
  extensions: [new SQLite({ database: process.env.DB ?? "hocuspocus.sqlite" })],
});
server.listen();

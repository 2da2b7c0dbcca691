import { createServer } from "node:net";

/** A port that something else already listens on. */
export interface TakenPort {
  port: number;
  /** Who wanted it, e.g. "wallet". */
  owner: string;
  /** The listen error code: EADDRINUSE, or EACCES for a privileged port. */
  code: string;
}

/**
 * Tries to listen on each port at `host` and closes again at once. Resolves with the ports that
 * could not be taken (empty when all are free). It is a check, not a reservation: a process that
 * grabs a port in between is caught later, when the service itself fails to listen.
 */
export async function findTakenPorts(
  host: string,
  ports: readonly { port: number; owner: string }[],
): Promise<TakenPort[]> {
  const taken: TakenPort[] = [];
  for (const { port, owner } of ports) {
    const code = await tryListen(host, port);
    if (code !== undefined) taken.push({ port, owner, code });
  }
  return taken;
}

function tryListen(host: string, port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(undefined)));
  });
}

import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** Thrown when another live launcher holds the data directory. */
export class DataDirInUseError extends Error {
  constructor(
    readonly dataDir: string,
    readonly pid: number,
  ) {
    super(
      `data directory ${dataDir} is in use by another devnet (pid ${pid}); stop it, or give this ` +
        "network its own TESSERA_DATA_DIR (and TESSERA_PORT_BASE)",
    );
    this.name = "DataDirInUseError";
  }
}

/** A held data-directory lock. */
export interface DataDirLock {
  /** Removes the lock file if it is still ours. Safe to call twice. */
  release(): void;
}

/**
 * Claims `<dataDir>/devnet.pid` for this process, so two networks never share service files.
 * A lock left by a process that no longer runs is taken over. Throws {@link DataDirInUseError}
 * when a live process holds it.
 */
export function lockDataDir(dataDir: string, pid: number = process.pid): DataDirLock {
  const file = join(dataDir, "devnet.pid");
  for (;;) {
    try {
      writeFileSync(file, `${pid}\n`, { flag: "wx" });
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const holder = Number.parseInt(readText(file), 10);
      if (Number.isInteger(holder) && holder !== pid && isAlive(holder)) {
        throw new DataDirInUseError(dataDir, holder);
      }
      rmSync(file, { force: true });
    }
  }
  let released = false;
  return {
    release() {
      if (released) return;
      released = true;
      if (Number.parseInt(readText(file), 10) === pid) rmSync(file, { force: true });
    },
  };
}

function readText(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return "";
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

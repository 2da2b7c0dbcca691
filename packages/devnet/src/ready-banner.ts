import { relative } from "node:path";
import type { LauncherResult, RunningService } from "./launcher.js";

/** What {@link formatReadyBanner} shows. */
export interface ReadyBannerOptions {
  services: readonly RunningService[];
  dataDir: string;
  /** Paths inside it are shown relative to it; default process.cwd(). */
  cwd?: string;
}

/**
 * The text printed once every service is SERVING. Its first line contains "tessera devnet ready"
 * (scripts and tests wait for it), then a table of services, URLs, pids and log files, and buf
 * curl commands to try (served through gRPC reflection, so no proto files are needed).
 */
export function formatReadyBanner(options: ReadyBannerOptions): string {
  const cwd = options.cwd ?? process.cwd();
  const show = (path: string) => {
    const rel = relative(cwd, path);
    return rel.startsWith("..") ? path : rel;
  };
  const rows = [
    ["SERVICE", "URL", "PID", "LOG"],
    ...options.services.map((s) => [s.name, s.url, String(s.pid), show(s.logFile)]),
  ];
  const widths = [0, 1, 2].map((column) =>
    Math.max(...rows.map((row) => row[column]?.length ?? 0)),
  );
  const table = rows.map(
    (row) =>
      `  ${row
        .map((cell, column) => cell.padEnd(widths[column] ?? 0))
        .join("   ")
        .trimEnd()}`,
  );
  const first = options.services[0];
  const sample = options.services.find((s) => s.name === "job-server") ?? first;
  const lines = [
    "",
    `tessera devnet ready: ${options.services.length} services, data in ${show(options.dataDir)}`,
    "",
    ...table,
    "",
  ];
  if (sample !== undefined) {
    lines.push(
      "Try:",
      `  pnpm exec buf curl --list-services ${sample.url}`,
      `  pnpm exec buf curl --protocol grpc ${sample.url}/grpc.health.v1.Health/Check`,
      `  curl ${sample.url}/healthz`,
      "",
    );
  }
  lines.push("Ctrl-C stops the network.", "");
  return lines.join("\n");
}

/** One line saying how the network ended, naming any service that did not stop cleanly. */
export function formatResult(result: LauncherResult): string {
  const problems = result.services
    .filter((s) => !s.clean)
    .map((s) => {
      if (s.forced) return `${s.name} was killed after its grace period`;
      return `${s.name} ended with ${s.signal !== null ? `signal ${s.signal}` : `exit code ${s.code}`}`;
    });
  if (result.reason === "failed") {
    return `tessera devnet failed: ${result.failure ?? "unknown reason"}\n`;
  }
  if (problems.length > 0) return `tessera devnet stopped, not cleanly: ${problems.join("; ")}\n`;
  return `tessera devnet stopped: ${result.services.length} services exited cleanly\n`;
}

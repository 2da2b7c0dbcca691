/**
 * `tessera artifact ...`: download a job's artifact (`get`) or upload a file as one (`put`),
 * through the job server's ArtifactService in checksummed chunks that resume where they stopped.
 */
import { stat } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { ArtifactSchema } from "@tessera/proto/tessera/job/v1/artifact_service_pb.js";
import { downloadArtifact, uploadArtifact } from "@tessera/sdk/artifacts";
import { mediaTypeOf } from "@tessera/sdk/media-types";
import { SDK_PROTOCOL_VERSION } from "@tessera/sdk/protocol-version";
import type { Command } from "commander";
import type { CliContext } from "../cli-context.js";
import { CliError } from "../cli-error.js";
import { formatArtifact } from "../job-format.js";
import { parseArtifactId, parseJobId } from "../job-options.js";
import { type JobServerOptions, withJobServer } from "../job-server-connection.js";
import { formatJson } from "../wallet-format.js";
import { JOB_SERVER_HELP, jobServerOptions } from "./job.js";

interface GetOptions extends JobServerOptions {
  readonly output?: string;
}

interface PutOptions extends JobServerOptions {
  readonly name?: string;
  readonly mediaType?: string;
  readonly jobId?: string;
}

/** Adds the `artifact` command group to `program`. */
export function registerArtifactCommands(program: Command, context: CliContext): void {
  const artifact = program
    .command("artifact")
    .description("download job outputs and upload job inputs (datasets, models, weights)")
    .addHelpText("after", JOB_SERVER_HELP);

  connection(
    artifact
      .command("get")
      .description("download an artifact, checking every chunk and the whole file's SHA-256")
      .argument(
        "<artifact>",
        "the artifact's id or artifact://<id> URI (as a job's result lists it)",
      ),
  )
    .option(
      "-o, --output <path>",
      "where to save it: a file, or a folder to save it in under its name (default: its name, here)",
    )
    .addHelpText(
      "after",
      "\nThe bytes go to <path>.partial first; an interrupted download resumes from it next time.",
    )
    .action(async (reference: string, options: GetOptions) => {
      const artifactId = parseArtifactId(reference);
      const { artifact, path } = await withJobServer(context, options, async (jobServer) => {
        const destination = await destinationOf(
          options.output,
          async () => {
            const { artifact: record } = await jobServer.artifacts.getArtifact({
              protocolVersion: SDK_PROTOCOL_VERSION,
              artifactId,
            });
            return record?.name ?? "";
          },
          artifactId,
        );
        const downloaded = await downloadArtifact(jobServer.artifacts, artifactId, destination);
        return { artifact: downloaded, path: destination };
      });
      context.stdout.write(
        options.json ? formatJson(ArtifactSchema, artifact) : formatArtifact(artifact, path),
      );
    });

  connection(
    artifact
      .command("put")
      .description("upload a file as an artifact and print its content reference")
      .argument("<file>", "the file to upload"),
  )
    .option("--name <name>", "the artifact's name (default: the file's name)")
    .option(
      "--media-type <type>",
      "its media type (default: from the extension, e.g. .csv text/csv)",
    )
    .option("--job-id <id>", "the job it belongs to, if any")
    .addHelpText(
      "after",
      "\nThe printed `ref:` line can be pasted into a job spec (e.g. dataset: {ref: …}). Uploading the\nsame content with the same name again answers the artifact you already have.",
    )
    .action(async (file: string, options: PutOptions) => {
      const path = resolve(file);
      const stats = await stat(path).catch((error: NodeJS.ErrnoException) => {
        if (error.code === "ENOENT") throw new CliError(`no such file: ${file}`);
        throw error;
      });
      if (!stats.isFile()) throw new CliError(`${file} is not a regular file`);
      const name = options.name ?? basename(path);
      if (name === "" || name.includes("/")) {
        throw new CliError(`--name must be non-empty and without "/", got ${JSON.stringify(name)}`);
      }
      const jobId = options.jobId === undefined ? undefined : parseJobId(options.jobId, "--job-id");
      const uploaded = await withJobServer(context, options, (jobServer) =>
        uploadArtifact(
          jobServer.artifacts,
          { path },
          { name, mediaType: options.mediaType ?? mediaTypeOf(path), jobId },
        ),
      );
      context.stdout.write(
        options.json ? formatJson(ArtifactSchema, uploaded) : formatArtifact(uploaded),
      );
    });
}

/** Adds the options every artifact command takes. */
function connection(command: Command): Command {
  return jobServerOptions(command, "print the artifact record as JSON instead of text");
}

/**
 * Where `get` saves: `output` when it names a file, `<output>/<name>` when it is a folder, else
 * `./<name>`. A name that is not a plain file name (empty, ".", "..") is replaced by the id.
 */
async function destinationOf(
  output: string | undefined,
  nameOf: () => Promise<string>,
  artifactId: string,
): Promise<string> {
  const safeName = async () => {
    const name = basename(await nameOf());
    return name === "" || name === "." || name === ".." ? artifactId : name;
  };
  if (output === undefined) return resolve(await safeName());
  const isFolder = await stat(output).then(
    (stats) => stats.isDirectory(),
    () => false,
  );
  return isFolder ? join(resolve(output), await safeName()) : resolve(output);
}

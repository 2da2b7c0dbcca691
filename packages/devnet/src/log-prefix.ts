/** ANSI foreground colours given to services in turn, so neighbouring prefixes look different. */
const PREFIX_COLOURS = [36, 35, 33, 32, 34] as const;

/** ANSI grey, for the launcher's own lines: neither a service's colour nor an alarming red. */
export const LAUNCHER_COLOUR = 90;

/** Matches ANSI SGR colour sequences (what pino-pretty emits), to keep log files plain text. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching the ESC control character is the point
const ANSI_SGR = /\u001b\[[0-9;]*m/g;

/** Options of {@link createLinePrefixer}. */
export interface LinePrefixerOptions {
  /** The label, e.g. "job-server". */
  name: string;
  /** Pad the label to this many characters so the columns line up; default the name's length. */
  width?: number;
  /** Position of the service in the table; picks its colour. Default 0. */
  index?: number;
  /** Colour the label with ANSI escapes. Default false (plain text, for pipes and files). */
  colour?: boolean;
  /** An ANSI foreground colour code that overrides the one picked by `index`. */
  ansiColour?: number;
}

/**
 * Returns a function that prefixes one log line with a padded service label and a separator:
 * `wallet       | <line>`. With `colour`, the label is coloured per service and bold is avoided so
 * the child's own colours stay readable.
 */
export function createLinePrefixer(options: LinePrefixerOptions): (line: string) => string {
  const label = options.name.padEnd(options.width ?? options.name.length);
  const colourCode =
    options.ansiColour ?? PREFIX_COLOURS[(options.index ?? 0) % PREFIX_COLOURS.length];
  const prefix = options.colour ? `\u001b[${colourCode}m${label} |\u001b[39m ` : `${label} | `;
  return (line) => prefix + line;
}

/** Removes ANSI colour sequences from a line, e.g. before appending it to a log file. */
export function stripAnsi(line: string): string {
  return line.replace(ANSI_SGR, "");
}

/**
 * Artifact ids and their `artifact://<id>` URIs (ContentRef.uri of content the job server holds).
 */

const SCHEME = "artifact://";

/** `artifact://<artifactId>`. */
export function artifactUri(artifactId: string): string {
  return `${SCHEME}${artifactId}`;
}

/**
 * The artifact id in `text`: either a bare id or an `artifact://<id>` URI. Undefined when `text`
 * is empty, has another scheme, or holds anything but printable ASCII without "/" and "\\".
 */
export function parseArtifactReference(text: string): string | undefined {
  const id = text.startsWith(SCHEME) ? text.slice(SCHEME.length) : text;
  if (id === "" || /[^!-~]|[/\\]/.test(id)) return undefined;
  return id;
}

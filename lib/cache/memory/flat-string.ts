/**
 * `text` as V8 keeps it flat. The strings handed to a backend are often rope ("cons") strings:
 * `storageId + '.' + key` and JSON.stringify's output are trees of parts, and a stored rope
 * keeps every part alive (measured: a 103-character metadata JSON held 216 B as a rope against
 * 120 B flat). Converting to a number flattens the string in place (the rope then points at one
 * flat copy, and V8's GC drops the rope). Ropes exist only from 13 characters on.
 */
export function flatten(text: string): string {
  if (text.length > 12) Number(text);
  return text;
}

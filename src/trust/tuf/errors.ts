/**
 * tuf-js's typed failures -> our TrustError codes. Callers branch on the code; the message keeps
 * tuf-js's own words for the audit log.
 *
 * A disk that refuses the metadata directory is not a trust failure: it passes through as a
 * StateStorageError (503, the client retries), as the Notary source's store does (REVIEW U8).
 */
import { ValueError as ModelValueError } from "@tufjs/models";
import { LengthOrHashMismatchError, UnsignedMetadataError } from "@tufjs/models/dist/error.js";
import {
  BadVersionError,
  DownloadError,
  DownloadLengthMismatchError,
  ExpiredMetadataError,
  RepositoryError,
  RuntimeError,
} from "tuf-js/dist/error.js";
import { StateStorageError, TrustError, type TrustErrorCode } from "../errors.js";
import type { UpdaterFetcher } from "./transport.js";

export function toTrustError(
  err: unknown,
  repository: string,
  fetcher: UpdaterFetcher | undefined,
  action: string,
): TrustError | StateStorageError {
  if (err instanceof TrustError || err instanceof StateStorageError) return err;
  const storage = asMetadataDirError(err);
  if (storage) return storage;
  const code = classify(err, fetcher);
  const detail = err instanceof Error ? err.message : String(err);
  return new TrustError(code, repository, undefined, `TUF ${action} failed (${code}): ${detail}`, {
    cause: err,
  });
}

function classify(err: unknown, fetcher: UpdaterFetcher | undefined): TrustErrorCode {
  // Order matters: the subclasses come before their parents.
  if (err instanceof DownloadLengthMismatchError) return "METADATA_INVALID";
  if (err instanceof DownloadError) return "TRUST_UNAVAILABLE";
  // EqualVersionError is a BadVersionError; the Updater swallows it where it is benign (an
  // unchanged timestamp), so one that reaches us is a real rollback or version mismatch.
  if (err instanceof BadVersionError) return "ROLLBACK";
  if (err instanceof ExpiredMetadataError) return "EXPIRED";
  if (err instanceof UnsignedMetadataError) return "SIGNATURE_INVALID";
  if (err instanceof LengthOrHashMismatchError) return "HASH_MISMATCH";
  if (err instanceof RuntimeError) {
    // tuf-js 5 rethrows snapshot and targets failures as RuntimeError(`... ${error}`) without a
    // cause. It stops at the first failure, so if the last download failed, that is the cause;
    // otherwise the bytes downloaded last failed verification (type lost: METADATA_INVALID).
    return fetcher?.lastDownloadFailed ? "TRUST_UNAVAILABLE" : "METADATA_INVALID";
  }
  if (err instanceof RepositoryError || err instanceof ModelValueError || err instanceof SyntaxError) {
    return "METADATA_INVALID";
  }
  if (err instanceof TypeError) return "METADATA_INVALID";
  // Anything else means trust could not be established now.
  return "TRUST_UNAVAILABLE";
}

/**
 * File-system errno codes that mean the state directory refused: tuf-js writes its metadata
 * directory with `fs.writeFileSync` (Updater.persistMetadata) and `mkdirSync`, so a full, read-only
 * or replaced directory surfaces here as a bare ErrnoException with a `path`. Network errors carry
 * errno codes too (ECONNREFUSED), but never a `path`, and reach us as DownloadError anyway.
 */
const STORAGE_ERRNOS = new Set(["ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "ENOTDIR", "EEXIST", "EIO"]);

function asMetadataDirError(err: unknown): StateStorageError | undefined {
  const e = err as NodeJS.ErrnoException | undefined;
  if (typeof e?.code !== "string" || typeof e.path !== "string" || !STORAGE_ERRNOS.has(e.code))
    return undefined;
  const operation = e.syscall === "read" || e.syscall === "scandir" ? "read" : "write";
  return new StateStorageError(operation, e.path, e.code, { cause: err });
}

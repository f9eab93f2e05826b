// Errors of the data layer. Each carries a stable `code` that the API maps to a response and tests
// assert on; messages are for people and may change.

export type DatasetErrorCode =
  | 'DATASET_PATH_INVALID' // absolute, escapes the data root, or not a directory
  | 'DATASET_NOT_FOUND' // the folder does not exist
  | 'DATASET_EMPTY' // no usable classes/images
  | 'DATASET_UNREADABLE' // a folder of it cannot be listed (permissions, I/O error)
  | 'DATASET_CHANGED' // a resumed job's image folder lost a class it trained on
  | 'DATASET_UNAVAILABLE'; // a built-in data set's files are missing or malformed

export class DatasetError extends Error {
  readonly code: DatasetErrorCode;
  constructor(code: DatasetErrorCode, message: string) {
    super(message);
    this.name = 'DatasetError';
    this.code = code;
  }
}

/** A user-supplied dataset path that may not be used. The API answers it with a 400. */
export class DatasetPathError extends DatasetError {
  constructor(code: 'DATASET_PATH_INVALID' | 'DATASET_NOT_FOUND', message: string) {
    super(code, message);
    this.name = 'DatasetPathError';
  }
}

/** A non-fatal problem (e.g. an unreadable image that was skipped). */
export interface DataWarning {
  code: 'IMAGE_UNREADABLE' | 'CLASS_EMPTY' | 'SYMLINK_OUTSIDE_ROOT' | 'FORMAT_UNREAD' | 'NAME_NOT_UTF8' | 'CLASS_ADDED';
  message: string;
}

// The corpus reader lives in src/corpus/ (the tokenizer trainer reads corpora too, and must not
// depend on the data package, which depends on the tokenizer); the data package re-exports it.
export * from '../corpus/read';

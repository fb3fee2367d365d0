// The package root: `import { randn, tidy, DebertaV2ForMaskedLM, fromPretrained } from 'camemberta'`.
export * from './tensor';
export * from './nn';
export * from './models';
export * from './io';

// The package root: `import { randn, tidy } from 'camemberta'`.
export * from './tensor';

export { AdamW, isBiasOrLayerNorm } from './adamw';
export type { AdamWOptions } from './adamw';

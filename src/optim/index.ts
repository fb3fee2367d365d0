export { AdamW, isBiasOrLayerNorm } from './adamw';
export type { AdamWOptions } from './adamw';
export { Lamb } from './lamb';
export type { LambOptions } from './lamb';
export type { Optimizer, StepOptions } from './optimizer';
export { learningRate, validateSchedule } from './schedule';
export type { ScheduleConfig } from './schedule';

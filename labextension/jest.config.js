/** The logic's unit tests (src/__tests__): plain TypeScript through ts-jest, in jsdom-free Node. */
module.exports = {
  preset: 'ts-jest',
  testEnvironment: 'node',
  testMatch: ['**/src/__tests__/**/*.spec.ts'],
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: { module: 'commonjs', types: ['jest'], strict: true } }] }
};

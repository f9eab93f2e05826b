// ESLint flat config: typescript-eslint's recommended rules with type information, over every
// TypeScript file the typecheck covers (src, test, bench, scripts, testkit).
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'generated/', 'node_modules/', 'data/', 'coverage/', 'web/', 'src/ml/backends/wasm-training/simd-module.generated.ts'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        projectService: { allowDefaultProject: ['vitest.config.ts', 'prisma.config.ts'] },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      // Async functions without await are used on purpose: Fastify hooks and handlers, and
      // interface implementations (the artifact stores, the model store) whose contract is
      // async even where one implementation happens to be synchronous.
      '@typescript-eslint/require-await': 'off',
      // The no-unsafe-* family flags every use of a value typed `any`. Ours come from untyped
      // edges we cannot type better at the use site: JSON.parse, tfjs's dataSync/arraySync,
      // protobufjs messages, Bull job data and worker_threads messages. Those are checked with
      // zod or by shape where they enter; the rules would only add casts, not safety.
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      // Shapes (number arrays) print as "2,3,4" in messages, which is what we want there.
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowArray: true }],
      // A variable a closure reads before its one assignment (train.ts's `run`) cannot be const.
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
      // `_` prefixes mark parameters an interface requires but this implementation does not use.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
    },
  },
  {
    // Plain JavaScript (this file, test fixtures run by node): no type information to check with.
    files: ['**/*.js', '**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: { ...tseslint.configs.disableTypeChecked.languageOptions, globals: globals.node },
  },
);

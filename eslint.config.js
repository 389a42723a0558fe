// @ts-check
import eslint from '@eslint/js';
import prettier from 'eslint-config-prettier';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', '.bench-out/', 'dist-bench/', 'coverage/', 'test/compat/nest11/node_modules/'] },
  { linterOptions: { reportUnusedDisableDirectives: 'error' } },
  eslint.configs.recommended,
  tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
      globals: globals.node,
    },
    rules: {
      // Numbers in messages and keys (`${ttl} ms`, `${prefix}${n}`) are the point; other types still need String().
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true }],
      // `!` states an invariant the compiler cannot see (an entry set just above, a matched regex group); a check would be dead code.
      '@typescript-eslint/no-non-null-assertion': 'off',
      // Callbacks written as `() => resolve()` / `(e) => reject(e)` are the Promise idiom, not a misuse of a void value.
      '@typescript-eslint/no-confusing-void-expression': ['error', { ignoreArrowShorthand: true }],
      // `async` without `await` is deliberate: it implements a Promise-returning interface and turns a throw into a rejection.
      '@typescript-eslint/require-await': 'off',
      // Nest modules are empty classes that carry a @Module() decorator.
      '@typescript-eslint/no-extraneous-class': ['error', { allowWithDecorator: true }],
      // Nest declares its option bags as classes (NestApplicationContextOptions) and documents passing object literals.
      '@typescript-eslint/no-unsafe-class-instance-assignment': 'off',
      // `_name` marks a parameter an interface or a framework hook requires but this implementation ignores.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // `SessionData[K] | undefined`: `SessionData[K]` is `unknown` only through the index signature; a key declared by
    // declaration merging (`visits: number`) still needs the `| undefined` of a missing value.
    files: ['lib/session/session.interface.ts', 'lib/session/current-session.proxy.ts'],
    rules: { '@typescript-eslint/no-redundant-type-constituents': 'off' },
  },
  {
    // `remove<T>()` is public API that mirrors `get<T>()`: callers name the type of the value they stored.
    files: ['lib/bags/attribute.bag.ts', 'lib/bags/session-attributes.ts'],
    rules: { '@typescript-eslint/no-unnecessary-type-parameters': 'off' },
  },
  {
    // Internal `decode<T>()`: the serializer returns `unknown`; callers (session codec, manager) name the type they stored.
    files: ['lib/cache/variable.frontend.ts'],
    rules: { '@typescript-eslint/no-unnecessary-type-parameters': 'off' },
  },
  {
    files: ['test/**/*.ts'],
    rules: {
      // supertest's `res.body` and Nest's `getHttpServer()` are `any` in their own typings; e2e tests assert on them.
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      // Jest hooks assign `let x: T` in beforeAll; teardown guards with `x?.close()` in case setup failed, which `T` cannot express.
      '@typescript-eslint/no-unnecessary-condition': 'off',
    },
  },
  {
    // Config files are plain JavaScript outside tsconfig.json: lint them without type information.
    files: ['**/*.js', '**/*.mjs', '**/*.cjs'],
    extends: [tseslint.configs.disableTypeChecked],
  },
  // Last: turns off the stylistic rules that Prettier owns.
  prettier,
);

// A stand-in for an object that differs from it in a few members: the database adapters wrap the
// driver adapters' objects so (src/db/adapters.ts), and tests take a dependency away so.

/** `target` with some members replaced; every other member its own, bound to it (it has private fields). */
export function overriding<T extends object>(target: T, replacements: Partial<Record<keyof T, unknown>>): T {
  return new Proxy(target, {
    get(t, prop) {
      if (Object.hasOwn(replacements, prop)) return replacements[prop as keyof T];
      const value: unknown = Reflect.get(t, prop, t);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(t) : value;
    },
  });
}

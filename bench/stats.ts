// Small statistics the benches share.

/** The middle value (the upper one of the two middles for an even count); xs is left unsorted. */
export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

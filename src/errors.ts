/**
 * Base class of every error this library throws on purpose. Every subclass declares
 * `static override readonly name: string = '<ClassName>'`: minifiers rename classes (the bundle's
 * own class name would read "i"), and the worker boundary rebuilds errors by this name.
 */
export class SurgeonError extends Error {
  static override readonly name: string = 'SurgeonError';
  constructor(message: string) {
    super(message);
    this.name = new.target.name; // the subclass's literal static name, identical in every bundle
  }
}

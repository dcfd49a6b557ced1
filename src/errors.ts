/** Base class of every error this library throws on purpose; `name` is the subclass name (survives the worker boundary). */
export class SurgeonError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}
